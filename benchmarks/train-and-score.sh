#!/usr/bin/env bash
# One measured run of benchmarks/recipes.sh and benchmarks/sweep.sh: train NAME into OUT/NAME for EPOCHS
# epochs from seed 0 with the given flags, then score it with `prendas evaluate`; a NAME already trained
# to the end is not trained again, and a generator already scored is not scored again, so an interrupted
# comparison picks up where it stopped. RAW=1 also scores an --ema run's raw weights.
# Usage: bash benchmarks/train-and-score.sh OUT EPOCHS NAME [train flags...]
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=$1 epochs=$2 name=$3; shift 3
# (a run stopped halfway has a run JSON too, saying "running": it is trained again from the start)
bash "$(dirname "$0")/train-once.sh" "$out" "$name" --epochs "$epochs" --seed 0 "$@"
pattern='generator_[0-9]*.keras'; [[ ${RAW:-0} == 1 ]] && pattern='generator_*.keras'
for model in "$out/$name"/models/$pattern; do
    file=$(basename "$model" .keras)
    scored="$(dirname "$model")/evaluation_${file#generator_}.json"
    if [[ -f $scored ]]; then echo "$file: already scored"; continue; fi
    "$py" -m prendas evaluate --model "$model"
done
