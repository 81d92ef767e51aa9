#!/usr/bin/env bash
# Issue 25: why the residual networks (--arch resnet) stalled. The stalled recipe of docs/recipes.md (R3GAN's loss,
# R1/R2 0.05, no spectral norm, width 16, a ramped average, labels and the classifier, 2e-4, float32) and one change
# at a time, each EPOCHS epochs from seed 0, measured after every epoch on 2,000 samples. A variant already trained to
# the end is not trained again. Run from the project root with the virtual environment of the README:
#   bash benchmarks/resnet_stall.sh [OUT] [EPOCHS]     (default: runs/resnet-stall, 2 epochs: about 6 minutes a
#                                                       variant on 2 free Zen 4 cores, width 32 about 4 times that)
set -euo pipefail
out=${1:-runs/resnet-stall}
epochs=${2:-2}
run() { bash "$(dirname "$0")/train-once.sh" "$out" "$1" --preset rpgan --no-spectral-norm --arch resnet --width 16 \
            --ema 0 --ema-kimg 500 --epochs "$epochs" --seed 0 --eval-every 1 "${@:2}"; }
for name in ${ONLY:-base beta2-0.9 r-0.5 no-labels width-32}; do
    case $name in
        base) run base ;;
        beta2-0.9) run beta2-0.9 --beta-2 0.9 ;;          # R3GAN's first beta_2 (it raises it to 0.99 later)
        r-0.5) run r-0.5 --r1 0.5 --r2 0.5 ;;              # ten times the penalties: the only bound on this discriminator
        no-labels) run no-labels --no-conditional ;;       # unconditional (no projection, no classifier)
        width-32) run width-32 --width 32 ;;               # twice the channels at every stage
        *) echo "unknown variant: $name" >&2; exit 2 ;;
    esac
done
