"""The results table from runs' JSON: one row per scored generator, hidden folders skipped."""

import json

from prendas.config import TrainConfig
from prendas.results import collect_runs, results_markdown


def _write_run(root, tag, config, evaluations, machine=None):
    models = root / "models"
    models.mkdir(parents=True)
    record = {"tag": tag, "status": "complete", "segments": [5], "training_seconds": 600.0, "config": config,
              "data": {"images": 60_000, "includes_test_images": False}}
    if machine:
        record["machine"] = {"name": machine}
    (models / f"run_{tag}.json").write_text(json.dumps(record))
    for prefix, fid in evaluations.items():
        metrics = {"fid": fid, "precision": 0.5, "recall": 0.25, "classes_over_5pct": 10, "kl_from_uniform": 0.01}
        if config.get("conditional"):
            metrics["label_agreement"] = 0.9
            metrics["coverage"] = 0.5
            metrics["recall_per_class"] = [0.3, 0.9, 0.1, 0.5, 0.4, 0.6, 0.05, 0.8, 0.7, 0.6]
        network = {"test_accuracy": 0.9312, "sha256": "0123456789ab"} if tag != "T0" else {"test_accuracy": 0.9284}
        floor = {"what": "10,000 real training images", **metrics, "fid": 0.06 if tag == "T0" else 0.01}
        (models / f"evaluation_{prefix}{tag}.json").write_text(
            json.dumps({"metrics": metrics, "floor": floor, "feature_network": network}))


def test_an_ema_run_has_a_row_for_the_average_and_one_for_the_raw_weights(tmp_path):
    _write_run(tmp_path / "ema", "T1", TrainConfig(ema=0.999, loss="hinge", spectral_norm=True).to_dict(),
               {"": 20.0, "raw_": 25.0})
    old_config = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("loss", "ema", "conditional")}
    _write_run(tmp_path / "old", "T0", old_config, {"": 40.0})  # a run from before the recipes existed
    _write_run(tmp_path / "cond", "T2", TrainConfig(conditional=True, ema=0.99).to_dict(), {"": 30.0, "raw_": 35.0},
               machine="AMD EPYC, 2 CPUs, AVX-512")
    _write_run(tmp_path / ".venv" / "lib", "T9", TrainConfig().to_dict(), {"": 1.0})  # not searched

    runs = collect_runs([tmp_path])
    assert [r[0]["tag"] for r in runs] == ["T0", "T1", "T2"]
    rows = [line.split("|")[1:-1] for line in results_markdown(runs, tmp_path / "RESULTS.md").splitlines()
            if line.startswith("| `")]
    cells = [[c.strip() for c in row] for row in rows]
    assert [(c[0], c[1], c[6]) for c in cells] == [
        ("`T0`", "bce", "40.00"),
        ("`T1`", "hinge+sn+ema0.999", "20.00"),
        ("`T1`", "hinge+sn (raw weights)", "25.00"),
        ("`T2`", "bce+ema0.99+cond", "30.00"),
        ("`T2`", "bce+cond (raw weights)", "35.00"),  # what follows the moving average in the name stays
    ]
    assert [c[13] for c in cells] == ["-", "-", "-", "90.0%", "90.0%"]
    # coverage and the two classes least reached, where the evaluation has them
    assert [(c[9], c[10]) for c in cells] == [("-", "-")] * 3 + [("0.500", "Shirt 0.05, Pullover 0.10")] * 2
    # which feature network measured each row: older evaluations have no digest
    assert [c[15] for c in cells] == ["92.84% `?`"] + ["93.12% `0123456789ab`"] * 4
    # and on which machine each trained (older records do not say)
    assert [c[16] for c in cells] == ["?"] * 3 + ["AMD EPYC, 2 CPUs, AVX-512"] * 2
    # and a floor row for each feature network, beside its figures
    table = results_markdown(runs, tmp_path / "RESULTS.md").splitlines()
    floors = [[c.strip() for c in line.split("|")[1:-1]] for line in table if line.startswith("| *floor")]
    assert [(c[6], c[15]) for c in floors] == [("0.06", "92.84% `?`"), ("0.01", "93.12% `0123456789ab`")]


def test_the_results_command_needs_no_keras(tmp_path):
    """`prendas results` reads JSON and writes markdown: it runs where Keras cannot be imported (an install
    without a backend, or KERAS_BACKEND unset with only JAX, where Keras falls back to TensorFlow)."""
    import subprocess
    import sys

    from conftest import ROOT

    _write_run(tmp_path / "run", "T1", TrainConfig().to_dict(), {"": 20.0})
    code = ("import sys; sys.modules['keras'] = sys.modules['tensorflow'] = sys.modules['jax'] = None\n"
            "from prendas.__main__ import main\n"
            f"sys.exit(main(['results', {str(tmp_path)!r}, '--out', {str(tmp_path / 'RESULTS.md')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 runs, 1 evaluated" in result.stdout and "`T1`" in (tmp_path / "RESULTS.md").read_text()
