#!/usr/bin/env bash
# The CPU figures in docs/speed.md: each configuration of the project's step beside the tutorial's
# loop (alternating, in one process), saved as benchmarks/PREFIX_*.json. About 20 minutes on 2 cores.
# Run from the project root with the virtual environment of the README: bash benchmarks/cpu.sh [PREFIX]
# (default prefix cpu; ONLY="float32 bf16" runs only those lines)
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
prefix=${1:-cpu}
bench() {
    name=$1; shift
    if [[ -n ${ONLY:-} && " $ONLY " != *" $name "* ]]; then return; fi
    "$py" -m prendas bench --batch-size 256 --steps 10 --repeats 3 "$@" --json "benchmarks/${prefix}_$name.json"
}
bench float32
bench steps10 --steps-per-execution 10
bench xla --xla
bench bf16 --precision mixed_bfloat16
# JAX: the project's step alone (the tutorial's loop is TensorFlow code), at a smaller batch: XLA on
# the CPU is slow at the generator's gradients.
bench jax_b64 --backend jax --batch-size 64 --steps 4
