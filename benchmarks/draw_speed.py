"""How fast saved generators draw, side by side in one process: each file loaded as plain Keras loads it (its own
precision, whatever it is), timed alternately, and how far apart their garments are.

Issue 33: the shipped generator's file carried the training run's mixed_bfloat16 policy, emulated (slowly) on a CPU
without bfloat16 arithmetic; it is now saved in float32. Compare the file as shipped before with today's:

    git show f9d7802:models/generator_2026-12-06-1701_24+16+24ep_60000imgs.keras > /tmp/before.keras
    PYTHONPATH=. .venv/bin/python benchmarks/draw_speed.py before=/tmp/before.keras \\
        now=models/generator_2026-12-06-1701_24+16+24ep_60000imgs.keras [--batch 256] [--repeats 5] [--json F]

ONEDNN_MAX_CPU_ISA=AVX2 shows what a CPU without bfloat16 sees (TensorFlow's kernels held to AVX2).
"""

import argparse
import statistics
import time

import keras
import numpy as np

from prendas import artifacts, devices
from prendas.models import computes_in
from prendas.sampling import balanced_labels, generate_images, latent_batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="NAME=PATH of each generator file")
    parser.add_argument("--batch", type=int, default=256, help="garments per call (default 256)")
    parser.add_argument("--calls", type=int, default=8, help="calls in each timed run (default 8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each file, alternating (default 5)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()

    models = {name: keras.models.load_model(path, compile=False) for name, path in (f.split("=", 1) for f in args.files)}
    z = latent_batch(args.batch, 100, 0)
    labels = balanced_labels(args.batch)
    drawn = {name: generate_images(model, z, labels, batch_size=args.batch) for name, model in models.items()}  # warm-up
    seconds = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            for _ in range(args.calls):
                generate_images(model, z, labels, batch_size=args.batch)
            seconds[name].append(time.perf_counter() - started)
    first = next(iter(models))
    result = {"machine": devices.machine_name(), "versions": devices.versions(), "batch": args.batch,
              "calls": args.calls, "files": dict(f.split("=", 1) for f in args.files), "generators": {}}
    for name, model in models.items():
        rates = [args.batch * args.calls / s for s in seconds[name]]
        difference = np.abs(drawn[name].astype(int) - drawn[first])
        result["generators"][name] = {
            "computes_in": computes_in(model), "images_per_s": round(statistics.median(rates), 1),
            "runs": [round(r, 1) for r in rates],
            f"pixels_from_{first}": {"max": int(difference.max()), "mean": round(float(difference.mean()), 4)}}
        print(f"{name}: {', '.join(computes_in(model))}, {statistics.median(rates):,.0f} images/s (median of "
              f"{args.repeats}); pixels from {first}'s: max {difference.max()}, mean {difference.mean():.3f} grey levels")
    print(f"machine: {result['machine']}")
    if args.json:
        artifacts.write_json(args.json, result)
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
