#!/usr/bin/env bash
# The recipe comparison in RESULTS.md: every recipe of docs/recipes.md trained for the same budget (the same
# epochs over the same 60,000 training images, batch 256, seed 0, on one machine), each scored by
# `prendas evaluate` (the saved moving average and the raw weights).
# Run from the project root with the virtual environment of the README:
#   bash benchmarks/recipes.sh [OUT] [EPOCHS]     (default: runs/recipes, 4 epochs: about 25 min a recipe on 2 cores)
# then `python -m prendas results OUT` writes the table.
set -euo pipefail
out=${1:-runs/recipes}
epochs=${2:-4}
recipe() { RAW=1 bash "$(dirname "$0")/train-and-score.sh" "$out" "$epochs" "$@"; }
recipe bce --ema 0.999
recipe hinge-sn --loss hinge --spectral-norm --ema 0.999
recipe wgan-gp --loss wgan-gp --ema 0.999
recipe hinge-sn-cond --loss hinge --spectral-norm --conditional --ema 0.999
# with the auxiliary classifier (AC-GAN) on top: the classes a projection alone leaves blurred (pullover, shirt)
recipe hinge-sn-cond-ac --loss hinge --spectral-norm --conditional --class-loss 1 --ema 0.999
recipe best --preset best     # the same at learning rate 2e-4: the preset
recipe bce-cond --conditional --ema 0.999
