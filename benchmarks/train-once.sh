#!/usr/bin/env bash
# One run of a sweep: train-once.sh OUT NAME [TRAIN FLAGS...] trains `prendas train FLAGS --out OUT/NAME`, unless
# OUT/NAME already holds a run trained to the end (so an interrupted sweep picks up where it stopped); a run left
# unfinished there is started again from nothing. Run from the project root (PYTHON: the interpreter, by default the
# README's virtual environment).
set -euo pipefail
py=${PYTHON:-.venv/bin/python}
out=$1 name=$2
shift 2
if grep -qs '"status": "complete"' "$out/$name"/models/run_*.json; then echo "$name: already trained"; exit 0; fi
rm -rf "${out:?}/${name:?}"
"$py" -m prendas train "$@" --out "$out/$name"
