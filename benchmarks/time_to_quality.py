"""Time to quality: FID, recall and coverage against training time for runs trained with --eval-every.

    .venv/bin/python benchmarks/time_to_quality.py OUT.png LABEL=path/to/run_TAG.json[@IMAGES_PER_S] ...

Each run's measurements (run_TAG.json's "evaluations") are drawn against the training time at which they were
taken: the run's own epoch times, or, where @IMAGES_PER_S is given, the images it had seen divided by that speed
(for runs whose epochs shared the cores with other work: give each recipe's speed as `prendas bench` measured it
with the cores free, side by side). Prints, for each run, when it first reached each threshold of --fid/--recall.
"""

import argparse
import json
import pathlib

from matplotlib.figure import Figure

FIGURES = (("fid", "FID (lower is better)"), ("recall", "recall"), ("coverage", "coverage"))


def curve(run, images_per_s=None):
    """[(hours, evaluation)] of a run record: each evaluation at the training time its epoch ended."""
    seconds, elapsed = {}, 0.0
    per_epoch = run["data"]["images"]
    for h in run["history"]:
        elapsed += per_epoch / images_per_s if images_per_s else h["seconds"]
        seconds[h["epoch"]] = elapsed
    return [(seconds[e["epoch"]] / 3600, e) for e in run["evaluations"] if e["epoch"] in seconds]


def first_reached(points, key, threshold):
    """The first time (hours) a run's figure `key` met `threshold` (FID at most, the others at least), or None."""
    for hours, e in points:
        if key in e and (e[key] <= threshold if key == "fid" else e[key] >= threshold):
            return hours
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("runs", nargs="+", help="LABEL=run_TAG.json, optionally @IMAGES_PER_S")
    parser.add_argument("--fid", type=float, default=0.78, help="report when each run first reached this FID")
    parser.add_argument("--recall", type=float, default=0.134, help="... and this recall")
    args = parser.parse_args(argv)
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    for index, spec in enumerate(args.runs):
        label, _, rest = spec.partition("=")
        path, _, speed = rest.partition("@")
        points = curve(json.loads(pathlib.Path(path).read_text()), float(speed) if speed else None)
        samples = {e["n"] for _, e in points}
        for ax, (key, _) in zip(axes, FIGURES):
            have = [(h, e[key]) for h, e in points if key in e]
            if have:
                ax.plot(*zip(*have), "o-", label=label, markersize=3, color=f"C{index}")  # (one colour a run)
            elif key == "coverage":
                ax.plot([], [], label=f"{label}: not recorded", color=f"C{index}")
        reached = {key: first_reached(points, key, getattr(args, key)) for key in ("fid", "recall")}
        print(f"{label}: {len(points)} measurements ({', '.join(f'{n:,}' for n in sorted(samples))} samples); " +
              "; ".join(f"{key} {'<=' if key == 'fid' else '>='} {getattr(args, key)} first at " +
                        (f"{hours:.2f} h" if hours is not None else "never") for key, hours in reached.items()))
    for ax, (key, title) in zip(axes, FIGURES):
        ax.set_xlabel("training time (hours)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if key == "fid":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
