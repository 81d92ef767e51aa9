#!/usr/bin/env bash
# Issue 25's one-change-at-a-time sweep of --preset best: each variant trained EPOCHS epochs over the 60,000
# training images from seed 0 (batch 256 unless changed), measured every 2 epochs on 2,000 samples (--eval-every),
# then drawn against minutes by benchmarks/time_to_quality.py. The base run is --preset best itself (width 16 at 8e-4
# since 2026-12-06; docs/recipes.md's sweep ran these variants around it at 4e-4: lr-8e-4, batch-128 at 2e-4, batch-512
# at 8e-4). A variant already trained to the end is not trained again, so an interrupted sweep picks up where it
# stopped. EVAL_EVERY=4 measures every 4th epoch instead; ONLY="a b" trains those variants only.
# Run from the project root with the virtual environment of the README:
#   bash benchmarks/sweep_best.sh [OUT] [EPOCHS]     (default: runs/sweep-best, 8 epochs: about 4 minutes a
#                                                     variant on 2 free Zen 4 cores with bf16, plus the measurements)
# Compare variants whose step costs the same at equal epochs; for those that change the step's cost (the batch
# size, the width), give time_to_quality.py each run's speed measured side by side (`prendas bench`, IMAGES_PER_S).
set -euo pipefail
out=${1:-runs/sweep-best}
epochs=${2:-8}
run() { bash "$(dirname "$0")/train-once.sh" "$out" "$1" --preset best --epochs "$epochs" --seed 0 \
            --eval-every "${EVAL_EVERY:-2}" "${@:2}"; }
for name in ${ONLY:-base lr-4e-4 lr-1.6e-3 betas-0.5-0.999 beta2-0.9 batch-128 batch-512 ema-kimg-100 gamma-kimg r-0.02 r-0.1}; do
    case $name in
        base) run base ;;
        lr-4e-4) run lr-4e-4 --lr 4e-4 ;;                       # half the preset's rate, 8e-4 (both networks)
        lr-1.6e-3) run lr-1.6e-3 --lr 1.6e-3 ;;                 # twice it
        r-0.02) run r-0.02 --r1 0.02 --r2 0.02 ;;               # weaker R1/R2
        r-0.1) run r-0.1 --r1 0.1 --r2 0.1 ;;                   # stronger R1/R2
        betas-0.5-0.999) run betas-0.5-0.999 --beta-1 0.5 --beta-2 0.999 ;;  # SNGAN's Adam (the hinge recipe's)
        beta2-0.9) run beta2-0.9 --beta-2 0.9 ;;                # R3GAN's first beta_2 (it raises it to 0.99 later)
        batch-128) run batch-128 --batch-size 128 --lr 4e-4 ;;  # half the batch at half the rate (linear scaling)
        batch-512) run batch-512 --batch-size 512 --lr 1.6e-3 ;;  # twice the batch at twice the rate
        gamma-kimg) run gamma-kimg --gamma-kimg $((epochs * 60)) ;;  # R1/R2 down to a tenth over the whole run
        ema-kimg-100) run ema-kimg-100 --ema 0 --ema-kimg 100 ;;  # a ramped average, half-life up to 100k images
        w32) run w32 --width 32 ;;                              # the tutorial's width (best-w32 is that at 4e-4; a slower step)
        *) echo "unknown variant: $name" >&2; exit 2 ;;
    esac
done
