#!/usr/bin/env bash
# The 12-epoch comparison (docs/recipes.md) of the conditional recipes: the previous preset (hinge + spectral norm
# + EMA + labels), with the auxiliary classifier (--class-loss 1), and both at learning rate 2e-4 (the
# classifier at weights 1 and 3), each 12 epochs over the 60,000 training images from seed 0, measured
# every 2 epochs on 2,000 samples and scored at the end by `prendas evaluate` (its moving average and
# its raw weights). The four ran side by side on 2 Zen 4 cores (about 1h15m together); the tutorial's DCGAN
# (bce) after them, beside the tests.
# Run from the project root with the virtual environment of the README:
#   bash benchmarks/long.sh [OUT] [EPOCHS]     (default: runs/long, 12 epochs)
# then `python -m prendas results OUT` writes the table.
set -euo pipefail
out=${1:-runs/long}
epochs=${2:-12}
run() { RAW=1 bash "$(dirname "$0")/train-and-score.sh" "$out" "$epochs" "$@" --loss hinge --spectral-norm --ema 0.999 \
        --conditional --eval-every 2; }
run best
run best-ac --class-loss 1
run best-ac-lr2e-4 --class-loss 1 --lr 2e-4      # the preset now (--preset best)
run best-ac3-lr2e-4 --class-loss 3 --lr 2e-4
# the tutorial's DCGAN at the same budget (its raw weights are the tutorial's; the average beside them)
RAW=1 bash "$(dirname "$0")/train-and-score.sh" "$out" "$epochs" bce --ema 0.999
