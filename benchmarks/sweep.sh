#!/usr/bin/env bash
# The sizes and rates of docs/recipes.md's "Latent size, batch size, learning rate": the unconditional
# hinge + spectral norm + EMA recipe trained for the same budget (EPOCHS over the 60,000 training images,
# seed 0) with one setting changed at a time, each scored by `prendas evaluate` (its moving average).
# Run from the project root with the virtual environment of the README:
#   bash benchmarks/sweep.sh [OUT] [EPOCHS]     (default: runs/sweep, 2 epochs: 6 runs of 11 to 16 min on 2 Zen 3 cores, 2 to 5 min on Zen 4)
# then `python -m prendas results OUT` writes the table.
set -euo pipefail
out=${1:-runs/sweep}
epochs=${2:-2}
run() { bash "$(dirname "$0")/train-and-score.sh" "$out" "$epochs" "$@" --loss hinge --spectral-norm --ema 0.999; }
run base
run latent-64 --latent-dim 64
# Bigger batches at the same images seen take fewer steps, so the learning rate grows with the batch:
run batch-1024-lr-2e-4 --batch-size 1024 --lr 2e-4     # square-root rule: lr x sqrt(1024/256)
run batch-1024-lr-4e-4 --batch-size 1024 --lr 4e-4     # linear rule: lr x 1024/256
run lr-2e-4 --lr 2e-4
# 16-bit layers (weights stay float32): bfloat16 is faster on a CPU with AVX-512 bf16 instructions, float16
# (with a dynamic loss scale) on GPUs; do they train as well?
run bf16 --precision mixed_bfloat16
run fp16 --precision mixed_float16
