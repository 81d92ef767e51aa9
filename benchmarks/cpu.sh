#!/usr/bin/env bash
# The CPU figures in BENCHMARKS.md: each configuration of the project's step beside the tutorial's
# loop (alternating, in one process), saved as benchmarks/cpu_*.json. About 20 minutes on 2 cores.
# Run from the project root with the virtual environment of the README: bash benchmarks/cpu.sh
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
bench() { name=$1; shift; "$py" -m prendas bench --batch-size 256 --steps 10 --repeats 3 "$@" --json "benchmarks/cpu_$name.json"; }
bench float32
bench steps10 --steps-per-execution 10
bench xla --xla
bench bf16 --precision mixed_bfloat16
# JAX: the project's step alone (the tutorial's loop is TensorFlow code), at a smaller batch: XLA on
# the CPU is slow at the generator's gradients.
"$py" -m prendas bench --backend jax --batch-size 64 --steps 4 --repeats 3 --json benchmarks/cpu_jax_b64.json
