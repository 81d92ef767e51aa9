"""Time to quality: FID, recall and coverage against training minutes, for runs trained with --eval-every.

    .venv/bin/python benchmarks/time_to_quality.py OUT.png LABEL=path/to/run_TAG.json[@IMAGES_PER_S] ... [--minutes 30]

Each run's measurements (run_TAG.json's "evaluations") are drawn against the training time at which they were
taken: the run's own epoch times, or, where @IMAGES_PER_S is given, the images it had seen divided by that speed
(for runs whose epochs shared the cores with other work: give each recipe's speed as measured side by side with the
cores free, e.g. by `prendas bench`). Prints, for each run, when it first reached each threshold of --fid/--recall/
--coverage, and a Markdown table of each run's last measurement within --minutes.
"""

import argparse
import json
import pathlib

from matplotlib.figure import Figure

FIGURES = (("fid", "FID (lower is better)"), ("recall", "recall"), ("coverage", "coverage"))


def curve(run, images_per_s=None):
    """[(minutes, evaluation)] of a run record: each evaluation at the training time its epoch ended."""
    seconds, elapsed = {}, 0.0
    per_epoch = run["data"]["images"]
    for h in run["history"]:
        elapsed += per_epoch / images_per_s if images_per_s else h["seconds"]
        seconds[h["epoch"]] = elapsed
    return [(seconds[e["epoch"]] / 60, e) for e in run["evaluations"] if e["epoch"] in seconds]


def first_reached(points, key, threshold):
    """The first time (minutes) a run's figure `key` met `threshold` (FID at most, the others at least), or None."""
    for minutes, e in points:
        if key in e and (e[key] <= threshold if key == "fid" else e[key] >= threshold):
            return minutes
    return None


def within(points, minutes):
    """The last (minutes, evaluation) taken at or before `minutes`, or None."""
    inside = [p for p in points if p[0] <= minutes]
    return inside[-1] if inside else None


def table(rows, minutes):
    """A Markdown table: each run's last measurement within `minutes` (rows: (label, point or None))."""
    lines = ["| run | epoch | minutes | FID | precision | recall | coverage | classes >= 5% | asked = seen |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, point in rows:
        if point is None:
            lines.append(f"| {label} | no measurement within {minutes:g} minutes | | | | | | | |")
            continue
        m, e = point
        asked = f"{e['label_agreement']:.1%}" if "label_agreement" in e else "-"  # (conditional runs, since 2026-12-06)
        lines.append(f"| {label} | {e['epoch']} | {m:.1f} | {e['fid']:.2f} | {e['precision']:.3f} | {e['recall']:.3f} | "
                     f"{e.get('coverage', float('nan')):.3f} | {e['classes_over_5pct']} | {asked} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("runs", nargs="+", help="LABEL=run_TAG.json, optionally @IMAGES_PER_S")
    parser.add_argument("--fid", type=float, default=0.30, help="report when each run first reached this FID")
    parser.add_argument("--recall", type=float, default=0.40, help="... this recall")
    parser.add_argument("--coverage", type=float, default=0.40, help="... and this coverage")
    parser.add_argument("--minutes", type=float, default=30, help="the table: each run's last measurement within this")
    args = parser.parse_args(argv)
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    rows = []
    for index, spec in enumerate(args.runs):
        label, _, rest = spec.partition("=")
        path, _, speed = rest.partition("@")
        points = curve(json.loads(pathlib.Path(path).read_text()), float(speed) if speed else None)
        samples = {e["n"] for _, e in points}
        for ax, (key, _) in zip(axes, FIGURES):
            have = [(m, e[key]) for m, e in points if key in e]
            if have:
                ax.plot(*zip(*have), "o-", label=label, markersize=3, color=f"C{index}")  # (one colour a run)
            elif key == "coverage":
                ax.plot([], [], label=f"{label}: not recorded", color=f"C{index}")
        reached = {key: first_reached(points, key, getattr(args, key)) for key in ("fid", "recall", "coverage")}
        print(f"{label}: {len(points)} measurements ({', '.join(f'{n:,}' for n in sorted(samples))} samples); " +
              "; ".join(f"{key} {'<=' if key == 'fid' else '>='} {getattr(args, key)} first at " +
                        (f"{m:.1f} min" if m is not None else "never") for key, m in reached.items()))
        rows.append((label, within(points, args.minutes)))
    for ax, (key, title) in zip(axes, FIGURES):
        ax.set_xlabel("training time (minutes)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.axvline(args.minutes, color="grey", linestyle="--", linewidth=1)
        if key == "fid":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(table(rows, args.minutes))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
