"""The results table: every run's settings, time and quality in one markdown file, from their JSON.

Like the table the original project kept by hand, but written from models/run_TAG.json and
models/evaluation_TAG.json (what `prendas evaluate` saves), with a thumbnail of each run's grid.
"""

import json
import os
import re
from pathlib import Path

from prendas import PrendasError, artifacts, format_seconds
from prendas.data import CLASS_NAMES


def collect_runs(folders):
    """(run record, {weights: evaluation}, folder) for every complete run under the folders, oldest first.

    `weights` is "" for the saved generator (the moving average in an --ema run) and "raw" for an
    --ema run's raw weights (generator_raw_TAG.keras, scored into evaluation_raw_TAG.json).
    Hidden folders (.venv, .git) are not searched.
    """
    runs = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise PrendasError(f"no folder {folder}")
        for tag, path in artifacts.run_records(folder):
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            record = json.loads(path.read_text())
            if record.get("status") != "complete":
                continue
            evaluations = {}
            for weights, model in (("", "generator"), ("raw", "generator_raw")):
                scores = artifacts.evaluation_path(artifacts.run_paths(path.parent.parent, tag, ema=True)[model])
                if scores.is_file():
                    evaluations[weights] = json.loads(scores.read_text())
            runs.append((record, evaluations, path.parent.parent))
    return sorted(runs, key=lambda r: r[0]["tag"])


def recipe_of(config, weights=""):
    """The run's recipe in a few words, from its saved settings (older runs have none: the tutorial's)."""
    from prendas.config import TrainConfig

    known = {k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__}
    recipe = TrainConfig.from_dict(known).recipe()
    if weights == "raw":
        recipe = re.sub(r"\+ema[^+]*", "", recipe) + " (raw weights)"  # (what follows the moving average stays)
    return recipe


def results_markdown(runs, out):
    """The markdown table; image links relative to the file `out`."""
    lines = [
        "# Results",
        "",
        "Every complete run found, with its quality measured by `python -m prendas evaluate` against the 10,000",
        "test images (FID: lower is better; precision: garments that look real; recall: how much of the real",
        "variety is covered; coverage: how many test images have a garment near them; least reached: the two",
        "classes of test images with the lowest recall; classes: how many of the ten get at least 5% of the samples; "
        "asked = seen: for a",
        "conditional generator, how often the classifier sees the class that was asked for). An `--ema` run has",
        "two rows: its saved generator (the moving average) and its raw weights. A floor row is 10,000 real",
        "training images scored the same way, one for each feature network: no generator can beat it. "
        "Written by `python -m prendas results`;",
        "do not edit by hand. Figures are comparable only when measured by the same feature network (the",
        "last column: its test accuracy and the start of its weights' SHA-256; `?` for evaluations older than the",
        "digest). Training times compare only on the same machine (the last column; `?` for runs older than the name).",
        "",
        "| run | recipe | batch | epochs | images | training time | FID | precision | recall | coverage | least reached "
        "| classes >= 5% | class KL | asked = seen | samples | feature network | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    floors = {}  # one floor row for each feature network (and number of images) the evaluations used
    for record, evaluations, root in runs:
        config, data = record["config"], record["data"]
        images = f"{data['images']:,}" + (" (incl. test)" if data.get("includes_test_images") else "")
        grid = artifacts.run_paths(root, record["tag"])["grid"]
        thumb = f'<img src="{os.path.relpath(grid, Path(out).parent)}" width="96">' if grid.is_file() else ""
        epochs = "+".join(map(str, record["segments"]))
        machine = record.get("machine", {}).get("name", "?")
        for weights, evaluation in (evaluations or {"": None}).items():
            if evaluation:
                m = evaluation["metrics"]
                agreement = f"{m['label_agreement']:.1%}" if "label_agreement" in m else "-"
                quality = [f"{m['fid']:.2f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}", *_variety(m),
                           str(m["classes_over_5pct"]), f"{m['kl_from_uniform']:.3f}", agreement]
                net = evaluation.get("feature_network", {})
                network = f"{net['test_accuracy']:.2%} `{net.get('sha256', '?')}`" if net else "?"
                if evaluation.get("floor"):
                    floors.setdefault((network, evaluation["floor"]["what"]), evaluation["floor"])
            else:
                quality, network = ["-"] * 8, ""
            lines.append(
                f"| `{record['tag']}` | {recipe_of(config, weights)} | {config['batch_size']} | {epochs} | {images} | "
                f"{format_seconds(record['training_seconds'])} | " + " | ".join(quality)
                + f" | {thumb if not weights else ''} | {network} | {machine} |"
            )
    for (network, what), floor in floors.items():
        lines.append(
            f"| *floor: {what}* | | | | | | {floor['fid']:.2f} | {floor['precision']:.3f} | {floor['recall']:.3f} | "
            + " | ".join(_variety(floor))
            + f" | {floor['classes_over_5pct']} | {floor['kl_from_uniform']:.3f} | | | {network} | |"
        )
    if not runs:
        lines.append("| (no complete run found) |" + " |" * 16)
    return "\n".join(lines) + "\n"


def _variety(metrics):
    """The coverage and the two classes of test images the garments reach least ('-' in older evaluations)."""
    coverage = f"{metrics['coverage']:.3f}" if "coverage" in metrics else "-"
    if "recall_per_class" not in metrics:
        return [coverage, "-"]
    lowest = sorted(zip(metrics["recall_per_class"], CLASS_NAMES))[:2]
    return [coverage, ", ".join(f"{name.split('/')[0]} {recall:.2f}" for recall, name in lowest)]


def write_results(folders, out):
    runs = collect_runs(folders)
    artifacts.write_text(out, results_markdown(runs, out))
    return runs
