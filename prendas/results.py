"""The results table: every run's settings, time and quality in one markdown file, from their JSON.

Like the table the original project kept by hand, but written from models/run_TAG.json and
models/evaluation_TAG.json (what `prendas evaluate` saves), with a thumbnail of each run's grid.
"""

import json
import os
from pathlib import Path

from prendas import PrendasError, artifacts
from prendas.callbacks import format_seconds


def collect_runs(folders):
    """(run record, evaluation or None, folder) for every complete run under the folders, oldest first."""
    runs = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise PrendasError(f"no folder {folder}")
        for path in sorted(folder.glob("**/models/run_*.json")):
            record = json.loads(path.read_text())
            if record.get("status") != "complete":
                continue
            evaluation_path = path.with_name("evaluation_" + path.name.removeprefix("run_"))
            evaluation = json.loads(evaluation_path.read_text()) if evaluation_path.is_file() else None
            runs.append((record, evaluation, path.parent.parent))
    return sorted(runs, key=lambda r: r[0]["tag"])


def results_markdown(runs, out):
    """The markdown table; image links relative to the file `out`."""
    lines = [
        "# Results",
        "",
        "Every complete run found, with its quality measured by `python -m prendas evaluate` against the 10,000",
        "test images (FID: lower is better; precision: garments that look real; recall: how much of the real",
        "variety is covered; classes: how many of the ten get at least 5% of the samples). The floor row is",
        "10,000 real training images scored the same way: no generator can beat it. Written by",
        "`python -m prendas results`; do not edit by hand.",
        "",
        "| run | batch | epochs | images | training time | FID | precision | recall | classes >= 5% | class KL | samples |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    floor = None
    for record, evaluation, root in runs:
        config, data = record["config"], record["data"]
        images = f"{data['images']:,}" + (" (incl. test)" if data.get("includes_test_images") else "")
        grid = root / "images" / f"grid_{record['tag']}.png"
        thumb = f'<img src="{os.path.relpath(grid, Path(out).parent)}" width="96">' if grid.is_file() else ""
        if evaluation:
            m = evaluation["metrics"]
            quality = [f"{m['fid']:.2f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}", str(m["classes_over_5pct"]),
                       f"{m['kl_from_uniform']:.3f}"]
            floor = floor or evaluation.get("floor")
        else:
            quality = ["-"] * 5
        epochs = "+".join(map(str, record["segments"]))
        lines.append(
            f"| `{record['tag']}` | {config['batch_size']} | {epochs} | {images} | "
            f"{format_seconds(record['training_seconds'])} | " + " | ".join(quality) + f" | {thumb} |"
        )
    if floor:
        lines.append(
            f"| *floor: {floor['what']}* | | | | | {floor['fid']:.2f} | {floor['precision']:.3f} | "
            f"{floor['recall']:.3f} | {floor['classes_over_5pct']} | {floor['kl_from_uniform']:.3f} | |"
        )
    if not runs:
        lines.append("| (no complete run found) | | | | | | | | | | |")
    return "\n".join(lines) + "\n"


def write_results(folders, out):
    runs = collect_runs(folders)
    artifacts.write_text(out, results_markdown(runs, out))
    return runs
