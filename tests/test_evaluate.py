"""The shipped feature network and the evaluation, on real Fashion-MNIST images (no mocks)."""

import json
import re
import shutil

import numpy as np
import pytest
from conftest import run_cli

from prendas import features as evaluator
from prendas.data import CLASS_NAMES
from prendas.evaluate import Reference, floor_scores


@pytest.fixture(scope="module")
def reference(real_data_dir):
    return Reference.shared()


def test_the_shipped_feature_network_is_the_recorded_one(reference):
    # The record (prendas/fashion_classifier.json, shown in docs/evaluation.md) is what the weights do,
    # and it is the 93% that issue 4 asks for, on the test images it never trained on.
    predicted = reference.probs.argmax(1)
    accuracy = (predicted == reference.data.y_test).mean()
    assert accuracy == pytest.approx(evaluator.load_record()["test_accuracy"], abs=1e-3)
    assert accuracy >= 0.93
    assert evaluator.load_record()["trained_on"] == "the 60,000 training images only"
    assert reference.features.shape == (10_000, 128)


def test_test_images_against_themselves(reference):
    scores = reference.score(reference.data.x_test, kid_subsets=5)
    assert scores["fid"] == pytest.approx(0, abs=1e-6)
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["coverage"] == 1.0
    assert scores["classes_over_5pct"] == 10 and scores["kl_from_uniform"] < 0.01


def test_real_training_images_are_the_floor_and_noise_makes_it_worse(reference):
    rng = np.random.default_rng(0)
    real = reference.data.x_train[rng.choice(60_000, 3_000, replace=False)].astype(np.float64)
    fids = []
    for noise in (0, 20, 60):
        noisy = np.clip(real + rng.normal(0, noise, real.shape), 0, 255).astype(np.uint8)
        fids.append(reference.score(noisy, full=False)["fid"])
    assert fids == sorted(fids) and fids[2] > 5 * fids[0] + 1


def test_a_one_class_generator_shows_as_collapse(reference):
    sneakers = reference.data.x_test[reference.data.y_test == CLASS_NAMES.index("Sneaker")]
    scores = reference.score(sneakers, kid_subsets=5)
    assert scores["classes_over_5pct"] == 1 and scores["kl_from_uniform"] > 2.0
    assert scores["recall"] < 0.3 and scores["coverage"] < 0.3
    # per class of the test images: the sneakers are all reached, the clothes and bags not at all (the
    # sneakers' balls do reach into the other shoes, sandals and ankle boots: footwear lies close together)
    sneaker = CLASS_NAMES.index("Sneaker")
    assert scores["recall_per_class"][sneaker] == 1.0 and scores["coverage_per_class"][sneaker] == 1.0
    clothes = [c for c, name in enumerate(CLASS_NAMES) if name not in ("Sandal", "Sneaker", "Ankle boot")]
    assert len(clothes) == 7 and all(scores["recall_per_class"][c] == 0 for c in clothes), scores["recall_per_class"]
    balanced = reference.score(reference.data.x_train[:3_000], full=False)
    assert balanced["kl_from_uniform"] < 0.05 and balanced["recall"] > scores["recall"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real 2-epoch run that also measures its quality after every epoch."""
    out = tmp_path_factory.mktemp("evalrun")
    result = run_cli("train", "--epochs", 2, "--images", 256, "--batch-size", 64, "--eval-every", 1,
                     "--eval-samples", 200, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_quality_during_training(tiny_run):
    out, result = tiny_run
    assert re.search(r"epoch 2/2 .* fid \d+\.\d  precision \d\.\d\d  recall \d\.\d\d  classes \d+", result.stdout)
    [record_path] = (out / "models").glob("run_*.json")
    record = json.loads(record_path.read_text())
    assert [e["epoch"] for e in record["evaluations"]] == [1, 2]
    assert all(e["n"] == 200 and e["fid"] > 0 for e in record["evaluations"])
    assert all(len(e["recall_per_class"]) == len(e["coverage_per_class"]) == 10 for e in record["evaluations"])
    assert re.search(r"epoch 2/2 .* coverage \d\.\d\d", result.stdout)
    assert "asked=seen" not in result.stdout and "label_agreement" not in record["evaluations"][0]  # (no labels asked)
    tag = record["tag"]
    assert (out / "images" / f"quality_{tag}.png").is_file()


def test_evaluate_command(tiny_run, reference, tmp_path, monkeypatch, capsys):
    out, _ = tiny_run
    [model] = (out / "models").glob("generator_2*.keras")  # (not the best-so-far generator_best_TAG)
    monkeypatch.setenv("PRENDAS_CACHE", str(tmp_path / "cache"))
    result = run_cli("evaluate", "--model", model, "--n", 500)
    assert result.returncode == 0, result.stderr
    assert "floor from the cache" not in result.stdout
    for label in ("FID", "KID x 1000", "precision", "recall", "density", "coverage", "classifier score",
                  "class KL from uniform", "classes with >= 5%", "floor (real)", "nearest training image"):
        assert label in result.stdout
    saved = model.with_name(model.name.replace("generator_", "evaluation_")).with_suffix(".json")
    report = json.loads(saved.read_text())
    assert report["n"] == 500 and report["floor"]["what"] == "500 real training images"
    assert report["metrics"]["fid"] > report["floor"]["fid"]  # an untrained GAN is far from real data
    # which garments it reaches: recall and coverage for each class of the test images, beside the floor's
    for key in ("recall_per_class", "coverage_per_class"):
        assert len(report["metrics"][key]) == len(report["floor"][key]) == 10
        assert all(0 <= x <= 1 for x in report["metrics"][key]) and min(report["floor"][key]) > 0  # real images reach every class
    assert "recall per class of the test images" in result.stdout and "coverage per class" in result.stdout
    assert report["feature_network"] == {"test_accuracy": evaluator.load_record()["test_accuracy"],
                                         "sha256": evaluator.weights_digest()}
    assert len(report["memorization"]["distance"]) == 100
    assert report["run"]["data"]["includes_test_images"] is False and "warning" not in report

    # The floor is the same for the next evaluation with the same n and seed: it comes from the cache,
    # and a cache file that cannot be read is scored again (those two here, in this process, from the same file;
    # the first evaluation above was a process of its own, as a user runs it).
    from prendas.__main__ import main

    assert main(["evaluate", "--model", str(model), "--n", "500", "--json", str(tmp_path / "again.json")]) in (0, None)
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["floor"] == report["floor"] and second["metrics"] == report["metrics"]
    assert second["floor_from_cache"] is True and report["floor_from_cache"] is False
    assert "floor from the cache" in capsys.readouterr().out
    [cached] = (tmp_path / "cache").glob("floor_*.json")
    for damage in ("{not json", "null"):
        cached.write_text(damage)
        floor, from_cache = floor_scores(reference, 500, 0, conditional=False)
        assert not from_cache and json.loads(json.dumps(floor)) == report["floor"]
        assert json.loads(cached.read_text()) == report["floor"]  # written again

    # the results table picks the run and its evaluation up
    table = tmp_path / "RESULTS.md"
    result = run_cli("results", out, "--out", table)
    assert result.returncode == 0 and "1 runs, 1 evaluated" in result.stdout, result.stderr
    [row] = [line for line in table.read_text().splitlines() if line.startswith(f"| `{report['run']['tag']}`")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:5] == ["bce", "64", "2", "256"] and cells[6] == f"{report['metrics']['fid']:.2f}"
    assert cells[9] == f"{report['metrics']['coverage']:.3f}" and len(cells[10].split(", ")) == 2  # least reached
    assert cells[13] == "-"  # no class asked for: an unconditional run
    assert 'src="' in cells[14] and "grid_" in cells[14]
    assert "*floor: 500 real training images*" in table.read_text()


def test_evaluate_warns_when_training_saw_test_images(tiny_run, tmp_path, capsys):
    from prendas.__main__ import main

    out, _ = tiny_run
    [model] = (out / "models").glob("generator_2*.keras")  # (not the best-so-far generator_best_TAG)
    [run_json] = (out / "models").glob("run_*.json")
    shutil.copy(model, tmp_path / model.name)
    record = json.loads(run_json.read_text())
    record["data"].update(images=70_000, train_images=60_000, test_images=10_000, includes_test_images=True)
    (tmp_path / run_json.name).write_text(json.dumps(record))
    assert main(["evaluate", "--model", str(tmp_path / model.name), "--n", "200", "--json", str(tmp_path / "e.json")]) == 0
    assert "WARNING: this generator trained on 10,000 of the test images" in capsys.readouterr().out
    assert "warning" in json.loads((tmp_path / "e.json").read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "missing.keras"], "no model file"),
        (["--model", "{model}", "--n", "5"], "--n must be from 100 to 60000"),
        (["--model", "{model}", "--json", "{tmp}/e.txt"], "must name a .json file"),
    ],
)
def test_evaluate_refuses_bad_input(tiny_run, tmp_path, args, message, capsys):
    from prendas.__main__ import main

    out, _ = tiny_run
    [model] = (out / "models").glob("generator_2*.keras")  # (not the best-so-far generator_best_TAG)
    assert main(["evaluate", *[a.format(model=model, tmp=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_a_conditional_run_measures_how_often_the_class_asked_is_seen(tmp_path):
    """With labels, each measurement during training also says how often the classifier sees the class asked for."""
    from prendas.config import TrainConfig
    from prendas.train import train

    lines = []
    run = train(TrainConfig(epochs=1, images=64, batch_size=32, latent_dim=8, conditional=True, eval_every=1,
                            eval_samples=100, out=str(tmp_path)), log=lines.append)
    [e] = run.evaluations
    assert 0 <= e["label_agreement"] <= 1
    assert json.loads(run.paths["run_json"].read_text())["evaluations"][0]["label_agreement"] == e["label_agreement"]
    assert any(re.search(r"epoch 1/1 .* asked=seen \d+%", line) for line in lines), lines
