"""What each piece of a preset's step costs: variants of the recipe, one setting changed at a time, timed in one
process beside the tutorial's loop (prendas.bench's TutorialBaseline), alternating, so that whatever else the
machine does falls on all of them alike. Prints each variant's images/s and its ratio to the tutorial loop.

    PYTHONPATH=. .venv/bin/python benchmarks/step_parts.py [--preset best] [--precision float32] [--steps 8] [--repeats 3]
        [--json OUT.json] [VARIANT ...]

A variant is NAME=SETTING=VALUE[,SETTING=VALUE...] over the preset (values read as Python literals), e.g.
reg8=reg_every=8 or plain=r1=0,r2=0 or batch512=batch_size=512,g_lr=8e-4,d_lr=8e-4 (a step of 512 images:
the images/s compare, each step holding its own batch); without any, the list below. Give --steps a multiple of every variant's
--reg-every, so that each timed run holds as many regularized steps.
"""

import argparse
import ast
import statistics
import sys

VARIANTS = [
    "preset=",
    "reg8=reg_every=8",
    "reg16=reg_every=16",
    "no-penalty=r1=0,r2=0,reg_every=1",
    "r1-only=r2=0",
    "no-sn=spectral_norm=False",
    "no-ema=ema=0",
    "no-classifier=class_loss=0",
]


def parse_variant(text):
    name, _, rest = text.partition("=")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        settings[key] = ast.literal_eval(value)
    return name, settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=VARIANTS)
    parser.add_argument("--preset", default="best")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from prendas import devices
    from prendas.artifacts import write_json
    from prendas.bench import ProjectStep, TutorialBaseline, alternate, project_config, whole_batches

    b = args.batch_size
    data = {b: whole_batches(b)}
    sides, recipes, batches = {}, {}, {}
    for text in args.variants:
        name, settings = parse_variant(text)
        settings = {"batch_size": b, **settings}  # (a variant may change the batch: batch512=batch_size=512)
        config = project_config(args.preset, args.precision, seed=0, **settings)
        if config.batch_size not in data:
            data[config.batch_size] = whole_batches(config.batch_size)
        images, labels = data[config.batch_size]
        recipes[name], batches[name] = config.recipe(), config.batch_size
        sides[name] = ProjectStep(images, labels if config.conditional else None, config)
    sides["tutorial loop"], recipes["tutorial loop"] = TutorialBaseline(data[b][0], b, 100, 0), "the tutorial's"
    batches["tutorial loop"] = b
    rates = alternate(sides, args.steps, args.repeats, batches)
    baseline = statistics.median(rates["tutorial loop"])
    print(f"machine: {devices.machine_name()}; {args.preset} in {args.precision}, batch {b}, medians of "
          f"{args.repeats} alternating runs of {args.steps} steps")
    print(f"{'variant':16}{'images/s':>10}{'ratio':>8}   runs; recipe")
    rows = []
    for name, recipe in recipes.items():
        median = statistics.median(rates[name])
        runs = " ".join(f"{r:,.0f}" for r in rates[name])
        print(f"{name:16}{median:>10,.0f}{median / baseline:>8.2f}   {runs}; {recipe}")
        rows.append({"variant": name, "recipe": recipe, "batch_size": batches[name], "images_per_s": round(median, 1),
                     "ratio": round(median / baseline, 3), "runs": [round(r, 1) for r in rates[name]]})
    if args.json:  # (written whole or not at all, as every file of the project)
        write_json(args.json, {"machine": devices.machine_name(), "preset": args.preset, "precision": args.precision,
                               "batch_size": b, "steps": args.steps, "repeats": args.repeats, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
