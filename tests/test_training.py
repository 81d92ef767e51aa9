"""End to end: real tiny runs through the command line, resume exactness, killed runs."""

import json
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import ROOT, files_under, run_cli
from PIL import Image

from prendas.artifacts import load_checkpoint
from prendas.config import TrainConfig
from prendas.devices import machine_name
from prendas.train import train

TINY = ["--images", 300, "--batch-size", 64, "--seed", 5, "--deterministic"]
TAG = r"\d{4}-\d\d-\d\d-\d{4}_%sep_300imgs"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """`prendas train` for 2 epochs, as a user would run it."""
    out = tmp_path_factory.mktemp("run")
    result = run_cli("train", "--epochs", 2, *TINY, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def _tag(out, pattern):
    [grid] = (out / "images").glob("grid_*.png")
    tag = grid.stem.removeprefix("grid_")
    assert re.fullmatch(TAG % pattern, tag), tag
    return tag


def test_a_run_writes_every_tagged_file(first_run):
    out, result = first_run
    tag = _tag(out, "2")
    expected = [
        f"checkpoints/checkpoint_{tag}.npz",
        *(f"images/image_{i}_{tag}.png" for i in range(5)),
        f"images/grid_{tag}.png",
        f"images/progress_{tag}.gif",
        f"models/discriminator_{tag}.keras",
        f"models/generator_{tag}.keras",
        f"models/run_{tag}.json",
    ]
    assert files_under(out) == sorted(expected)
    # progress: one line per epoch with the losses, the speed and the time left
    assert re.search(r"epoch 1/2  d_loss \d\.\d{4}  g_loss \d\.\d{4}  [\d,]+ img/s .* eta ", result.stdout)
    assert "epoch 2/2" in result.stdout

    record = json.loads((out / f"models/run_{tag}.json").read_text())
    assert record["status"] == "complete" and record["epochs_done"] == 2 and record["segments"] == [2]
    assert record["config"]["batch_size"] == 64 and record["config"]["images"] == 300
    assert record["data"]["images"] == 300 and record["data"]["includes_test_images"] is False
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert all(h["images_per_s"] > 0 and np.isfinite(h["d_loss"]) for h in record["history"])
    assert {"tensorflow", "keras", "numpy", "python"} <= set(record["versions"])
    assert record["machine"]["name"] == machine_name()  # the processor (and its vector width), for the timings

    grid = Image.open(out / f"images/grid_{tag}.png")
    assert grid.mode == "L" and grid.size == ((8 * 30 + 2) * 2,) * 2  # 8 x 8 fixed samples, scaled 2x
    assert Image.open(out / f"images/image_0_{tag}.png").size == (112, 112)
    gif = Image.open(out / f"images/progress_{tag}.gif")
    assert gif.n_frames == 2  # one frame per epoch

    meta, frames, _ = load_checkpoint(out / f"checkpoints/checkpoint_{tag}.npz")
    assert meta["epochs_done"] == 2 and len(frames) == 2


def test_saved_models_load_in_a_fresh_process(first_run):
    out, _ = first_run
    tag = _tag(out, "2")
    code = (
        "import keras, sys; g = keras.models.load_model(sys.argv[1]); d = keras.models.load_model(sys.argv[2]);"
        "print(g.input_shape, g.output_shape, d.output_shape)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, out / f"models/generator_{tag}.keras", out / f"models/discriminator_{tag}.keras"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(None, 100) (None, 28, 28, 1) (None, 1)"


def test_generate_draws_from_a_saved_model(first_run, tmp_path):
    out, _ = first_run
    tag = _tag(out, "2")
    png = tmp_path / "garments.png"
    result = run_cli("generate", "--model", out / f"models/generator_{tag}.keras", "--n", 25, "--out", png, "--seed", 1)
    assert result.returncode == 0, result.stderr
    assert Image.open(png).size == ((5 * 30 + 2) * 3,) * 2  # 5 x 5, scaled 3x
    again = tmp_path / "again.png"
    run_cli("generate", "--model", out / f"models/generator_{tag}.keras", "--n", 25, "--out", again, "--seed", 1)
    assert again.read_bytes() == png.read_bytes()  # the seed fixes the garments


@pytest.mark.numeric
def test_resume_continues_exactly(first_run, tmp_path):
    """2 epochs, then 2 more after a resume in a new process == 4 epochs straight."""
    out, _ = first_run
    tag = _tag(out, "2")
    result = run_cli("train", "--resume", out / f"checkpoints/checkpoint_{tag}.npz", "--epochs", 2, "--deterministic")
    assert result.returncode == 0, result.stderr
    assert "epoch 3/4" in result.stdout and "epoch 4/4" in result.stdout
    [resumed] = (out / "models").glob("generator_*2+2ep*.keras")
    resumed_tag = resumed.stem.removeprefix("generator_")
    assert re.fullmatch(TAG % r"2\+2", resumed_tag)
    record = json.loads((out / f"models/run_{resumed_tag}.json").read_text())
    assert record["segments"] == [2, 2] and record["epochs_done"] == 4 and len(record["history"]) == 4
    assert record["resumed_from"].endswith(f"checkpoint_{tag}.npz")
    assert (out / f"models/generator_{tag}.keras").exists()  # the first run's files are kept

    straight = train(
        TrainConfig(epochs=4, images=300, batch_size=64, seed=5, deterministic=True, out=str(tmp_path)),
        log=lambda line: None,
    )
    resumed_weights = keras.models.load_model(resumed).get_weights()
    for a, b in zip(straight.gan.generator.get_weights(), resumed_weights):
        np.testing.assert_array_equal(a, b)
    assert [h["g_loss"] for h in straight.history] == pytest.approx([h["g_loss"] for h in record["history"]], abs=1e-6)
    assert Image.open(out / f"images/progress_{resumed_tag}.gif").n_frames == 4  # frames of all 4 epochs


@pytest.mark.numeric
def test_several_steps_per_call_train_exactly_as_one(tmp_path):
    """--steps-per-execution changes how steps are dispatched, not what they compute (3 does not divide 5 steps)."""
    runs = [
        train(TrainConfig(epochs=2, images=300, batch_size=64, seed=5, deterministic=True, steps_per_execution=k,
                          out=str(tmp_path / str(k))), log=lambda line: None)
        for k in (1, 3)
    ]
    assert int(runs[1].gan.d_optimizer.iterations) == 10  # 5 steps an epoch: none lost or added at the ends
    for a, b in zip(runs[0].gan.generator.get_weights(), runs[1].gan.generator.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [h["d_loss"] for h in runs[0].history] == pytest.approx([h["d_loss"] for h in runs[1].history], abs=1e-6)


def test_a_killed_run_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL a run while it rewrites its checkpoint every epoch: the checkpoint still loads and resumes."""
    cmd = [sys.executable, "-m", "prendas", "train", "--epochs", 1000, "--images", 64, "--batch-size", 64, "--out", tmp_path]
    env = {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(list(map(str, cmd)), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoints = tmp_path / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints.exists() and any(checkpoints.glob("checkpoint_*.npz"))):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    time.sleep(2.3)  # a few more epochs (each rewrites the checkpoint), then kill mid-way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [checkpoint] = checkpoints.glob("checkpoint_*.npz")
    meta, frames, _ = load_checkpoint(checkpoint)
    assert meta["epochs_done"] >= 1 and len(frames) == meta["epochs_done"]
    result = run_cli("train", "--resume", checkpoint, "--epochs", 1)
    assert result.returncode == 0, result.stderr
    assert f"epoch {meta['epochs_done'] + 1}/{meta['epochs_done'] + 1}" in result.stdout


@pytest.mark.numeric
def test_minutes_stop_a_run_after_the_last_epoch_that_fits_and_it_resumes_exactly(tmp_path, monkeypatch):
    """--minutes 5 with epochs that take 100 s (a clock of the test's, read at the start and at each epoch's end): the
    run stops after 3 of 10 epochs (a fourth would end at 400 s), its files tagged 3ep, its record saying why; resumed
    for 1 more it is the run of 4 epochs straight. The best generator so far (--eval-every) goes to the new tag too."""
    import itertools

    from prendas import run as run_module
    from prendas.train import resume

    ticks = itertools.count(0, 100)
    monkeypatch.setattr(run_module, "clock", lambda: next(ticks))
    settings = dict(images=300, batch_size=64, seed=5, deterministic=True, eval_every=2, eval_samples=100)
    said = []
    run = train(TrainConfig(epochs=10, minutes=5, out=str(tmp_path / "timed"), **settings), log=said.append)
    assert run.epochs_done == 3 and re.fullmatch(TAG % "3", run.tag)
    assert "--minutes 5: the next epoch would end past 5m00s, so the run stops after 3 of 10 epochs" in "\n".join(said)
    names = files_under(tmp_path / "timed")
    assert all(run.tag in name for name in names)  # (none left under the tag of the 10 epochs asked for)
    assert {f"models/generator_{run.tag}.keras", f"models/generator_best_{run.tag}.keras",
            f"checkpoints/checkpoint_{run.tag}.npz", f"checkpoints/checkpoint_best_{run.tag}.npz"} <= set(names)
    record = json.loads(run.paths["run_json"].read_text())
    assert record["status"] == "complete" and record["segments"] == [3] and record["epochs_done"] == 3
    assert record["stopped_by_minutes"] == {"minutes": 5, "epochs_asked": 10}
    assert record["best"]["generator"] == str(run.paths["generator_best"])
    meta, _, _ = load_checkpoint(run.paths["checkpoint"])
    assert meta["status"] == "complete" and meta["tag"] == run.tag
    evaluation = json.loads(run.paths["evaluation_best"].read_text())  # (the best so far names its new tag too)
    assert evaluation["model"] == str(run.paths["generator_best"]) and evaluation["run"]["tag"] == run.tag
    best, _, _ = load_checkpoint(run.paths["checkpoint_best"])
    assert best["tag"] == run.tag and best["best"] == record["best"] and best["epochs_done"] == 2

    resumed = resume(run.paths["checkpoint"], 1, log=lambda line: None)  # (a budget is its session's: not carried)
    assert resumed.config.minutes == 0
    assert re.fullmatch(TAG % r"3\+1", resumed.tag) and resumed.epochs_done == 4
    straight = train(TrainConfig(epochs=4, out=str(tmp_path / "straight"), **settings), log=lambda line: None)
    for a, b in zip(straight.gan.generator.get_weights(), resumed.gan.generator.get_weights()):
        np.testing.assert_array_equal(a, b)
