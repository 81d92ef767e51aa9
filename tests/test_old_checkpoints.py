"""Checkpoints written by the code before the training step was written once (commit BEFORE) resume today.

The old code is taken from the repository's history (git archive) and trains a tiny run in a process of
its own; today's code resumes its checkpoint. For the tutorial's recipe the result is the same run as
today's code trained straight through: the refactor kept the arithmetic.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import keras
import numpy as np
import pytest
from conftest import ROOT, run_cli

from prendas.config import TrainConfig
from prendas.train import train

pytestmark = pytest.mark.slow  # (the code of before, from git: deeper than the suite's other checks; CI runs them)

BEFORE = "bb98b64f50d1b36af4cf9a027f2bc20e005e3be3"  # main before the step was written once (issue 15)
TINY = ["--images", 300, "--batch-size", 64, "--seed", 5, "--deterministic"]


def _code_at(commit, folder):
    """The package as it was at `commit`, extracted into `folder`."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and the repository's history (a clone, not an exported tree)")
    archive = subprocess.run(["git", "archive", commit, "prendas"], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {commit[:7]} is not in this clone's history (a shallow clone?)")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


@pytest.fixture(scope="module")
def old_code(tmp_path_factory):
    """The package as it was at BEFORE, in a folder of its own."""
    return _code_at(BEFORE, tmp_path_factory.mktemp("before"))


def _train_with_old_code(old_code, out, *args):
    env = dict(os.environ, PYTHONPATH=str(old_code))
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "prendas", "train", *map(str, args), "--out", str(out)],
                            cwd=out, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = (out / "checkpoints").glob("checkpoint_*.npz")
    return checkpoint


def test_an_old_checkpoint_resumes_into_the_same_run(old_code, tmp_path):
    """2 epochs by the old code, 2 more by today's == 4 epochs by today's code straight through."""
    checkpoint = _train_with_old_code(old_code, tmp_path / "old", "--epochs", 2, *TINY)
    result = run_cli("train", "--resume", checkpoint, "--epochs", 2)
    assert result.returncode == 0, result.stderr
    assert "epoch 3/4" in result.stdout and "epoch 4/4" in result.stdout
    [resumed] = (tmp_path / "old" / "models").glob("generator_*_2+2ep_300imgs.keras")
    record = json.loads(resumed.with_name(resumed.name.replace("generator_", "run_").replace(".keras", ".json")).read_text())
    straight = train(TrainConfig(epochs=4, images=300, batch_size=64, seed=5, deterministic=True, out=str(tmp_path / "new")),
                     log=lambda line: None)
    for a, b in zip(straight.gan.generator.get_weights(), keras.models.load_model(resumed).get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [h["g_loss"] for h in straight.history] == pytest.approx([h["g_loss"] for h in record["history"]], abs=1e-5)


def test_an_old_checkpoint_of_the_best_preset_resumes(old_code, tmp_path):
    """--preset best (spectral norm, the moving average, labels, the classifier): its state loads and trains on."""
    checkpoint = _train_with_old_code(old_code, tmp_path, "--epochs", 1, "--preset", "best", *TINY)
    result = run_cli("train", "--resume", checkpoint, "--epochs", 1)
    assert result.returncode == 0, result.stderr
    [record] = (tmp_path / "models").glob("run_*_1+1ep_300imgs.json")
    history = json.loads(record.read_text())["history"]
    assert len(history) == 2 and all(np.isfinite([h["d_loss"], h["g_loss"]]).all() for h in history)
    [generator] = (tmp_path / "models").glob("generator_2*_1+1ep_300imgs.keras")  # (not generator_raw_)
    assert keras.models.load_model(generator).input_shape == [(None, 100), (None, 1)]


WIDTH_BEFORE = "00cffa9322c35e2a7eca224b722cb4862a6190a6"  # main before --width shaped the DCGAN's networks


def test_a_dcgan_run_given_a_width_before_it_shaped_the_dcgan_resumes_at_the_tutorials_width(tmp_path):
    """Before, --width 16 with --arch dcgan trained the tutorial's networks (32): today's code resumes them at 32,
    saying so, where building them at 16 would not hold the checkpoint's weights."""
    code = _code_at(WIDTH_BEFORE, tmp_path / "code")
    checkpoint = _train_with_old_code(code, tmp_path / "run", "--epochs", 1, "--width", 16, *TINY)
    result = run_cli("train", "--resume", checkpoint, "--epochs", 1)
    assert result.returncode == 0, result.stderr
    assert "it resumes at --width 32" in result.stdout
    [record] = (tmp_path / "run" / "models").glob("run_*_1+1ep_300imgs.json")
    assert json.loads(record.read_text())["config"]["width"] == 32
    [generator] = (tmp_path / "run" / "models").glob("generator_*_1+1ep_300imgs.keras")
    assert keras.models.load_model(generator).layers[1].units == 7 * 7 * 256  # the tutorial's first layer
