"""TensorBoard (`train --tensorboard`): the event files read back with TensorBoard's own reader (and
TensorFlow's), with the right values at the right steps; a resumed run continues the same curves, and an
interrupted session's points after the checkpoint are dropped; the same on JAX without TensorFlow."""

import importlib.util
import json

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray
from test_jax import cli_without_tensorflow

from prendas import PrendasError
from prendas.__main__ import main
from prendas.config import TrainConfig
from prendas.tensorboard_log import EventWriter, drop_points_from
from prendas.train import resume, train

TINY = dict(images=256, batch_size=32, latent_dim=16)  # 8 steps an epoch


def read_log(folder):
    """{tag: [(step, value)]} of the scalars, {tag: [(step, width, height)]} of the images, the text tags."""
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    scalars = {t: [(e.step, float(make_ndarray(e.tensor_proto))) for e in events.Tensors(t)]
               for t in tags["tensors"] if t.split("/")[0] in ("steps", "epoch", "quality")}
    images = {t: [(e.step, e.width, e.height) for e in events.Images(t)] for t in tags["images"]}
    return scalars, images, [t for t in tags["tensors"] if t not in scalars]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    out = tmp_path_factory.mktemp("logged")
    run = train(TrainConfig(epochs=2, out=str(out), tensorboard="", tensorboard_every=2, eval_every=2,
                            eval_samples=100, conditional=True, **TINY), log=lambda line: None)
    return run, out


def test_the_run_logs_losses_speed_quality_the_grid_and_its_settings(logged):
    run, out = logged
    folder = out / "logs" / run.tag
    assert run.config.tensorboard == str(folder)  # resolved, and saved so that a resumed run continues it
    scalars, images, others = read_log(folder)
    assert [s for s, _ in scalars["steps/d_loss"]] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [s for s, _ in scalars["epoch/g_loss"]] == [8, 16]
    for epoch, record in enumerate(run.history):
        assert scalars["epoch/d_loss"][epoch][1] == pytest.approx(record["d_loss"], rel=1e-6)
        assert scalars["epoch/images_per_s"][epoch][1] == pytest.approx(record["images_per_s"])
        # Each point is the mean over its 2 steps: four of them average to the epoch's mean.
        points = [v for s, v in scalars["steps/g_loss"] if epoch * 8 < s <= (epoch + 1) * 8]
        assert np.mean(points) == pytest.approx(record["g_loss"], rel=1e-5)
    assert all(v > 0 for _, v in scalars["steps/images_per_s"])
    measured = run.evaluations[-1]
    assert scalars["quality/fid"] == [(16, pytest.approx(measured["fid"]))]
    assert scalars["quality/recall"] == [(16, pytest.approx(measured["recall"]))]
    height, width = run.frames[-1].shape
    assert images["samples/fixed_noise"] == [(8, width, height), (16, width, height)]
    assert "settings" in others and "_hparams_/session_start_info" in others


def test_tensorflow_reads_the_files_too(logged):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow's own reader (the JAX-only environment has none)")
    run, out = logged
    [events] = (out / "logs" / run.tag).glob("events.out.tfevents.*")
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(events)) for v in e.summary.value}
    assert {"epoch/d_loss", "steps/g_loss", "samples/fixed_noise", "quality/fid", "settings"} <= tags


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


def test_a_resumed_run_continues_the_curves_and_drops_what_the_interruption_left(tmp_path):
    config = TrainConfig(epochs=4, out=str(tmp_path), tensorboard="", tensorboard_every=2, **TINY)
    with pytest.raises(KeyboardInterrupt):  # in epoch 3, after its steps 18 and 20 (of 17..24) were logged
        train(config, callbacks=[_StopAt(2, 3)], log=lambda line: None)
    [folder] = (tmp_path / "logs").iterdir()
    before, _, _ = read_log(folder)
    assert [s for s, _ in before["steps/d_loss"]][-2:] == [18, 20] and before["epoch/d_loss"][-1][0] == 16
    [checkpoint] = (tmp_path / "checkpoints").glob("checkpoint_*.npz")
    more = resume(checkpoint, 2, log=lambda line: None)  # epochs 3 and 4, into the same folder, without asking
    assert more.config.tensorboard == str(folder) and len(list(folder.glob("events.out.tfevents.*"))) == 2
    scalars, images, _ = read_log(folder)
    assert [s for s, _ in scalars["steps/d_loss"]] == list(range(2, 33, 2))  # once each: 18 and 20 replaced
    assert [s for s, _ in scalars["epoch/d_loss"]] == [8, 16, 24, 32]
    assert [v for _, v in scalars["epoch/d_loss"]][2:] == pytest.approx([h["d_loss"] for h in more.history[2:]])
    assert [s for s, _, _ in images["samples/fixed_noise"]] == [8, 16, 24, 32]


def test_without_the_tensorboard_package_it_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main(["train", "--tensorboard", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install tensorboard" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(PrendasError, match="needs the tensorboard package"):
        train(TrainConfig(epochs=1, out=str(tmp_path / "run"), tensorboard="tb", **TINY))
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


def test_points_every_n_steps_count_the_run_s_steps_not_the_epoch_s(tmp_path):
    # 8 steps an epoch, a point every 3: steps 3, 6 | 9, 12, 15 | 18, 21, 24; the first of an epoch averages the
    # steps since the epoch's start (9: one step, 18: two), the others the 3 since the previous point.
    run = train(TrainConfig(epochs=3, out=str(tmp_path), tensorboard="", tensorboard_every=3, **TINY),
                log=lambda line: None)
    scalars, _, _ = read_log(tmp_path / "logs" / run.tag)
    assert [s for s, _ in scalars["steps/d_loss"]] == [3, 6, 9, 12, 15, 18, 21, 24]
    # Weighted by the steps each covers, epoch 2's points (9: 1 step, 12 and 15: 3 each) and its last 1 step
    # average to its mean; the last step's loss is unknown, so check epoch 3 (18: 2, 21: 3, 24: 3 steps) exactly.
    third = dict(scalars["steps/g_loss"])
    assert (2 * third[18] + 3 * third[21] + 3 * third[24]) / 8 == pytest.approx(run.history[2]["g_loss"], rel=1e-5)


def test_points_with_several_steps_per_call_land_where_the_multiples_are_passed(tmp_path):
    # Keras reports a batch only at the end of each compiled call of 3 steps (3, 6, 8 | 11, 14, 16; it numbers the
    # short last call as if whole, 9 and 17): a point every 4 steps is written at the first report past 4, 8, 12, 16.
    run = train(TrainConfig(epochs=2, out=str(tmp_path), tensorboard="", tensorboard_every=4, steps_per_execution=3,
                            **TINY), log=lambda line: None)
    scalars, _, _ = read_log(tmp_path / "logs" / run.tag)
    assert [s for s, _ in scalars["steps/d_loss"]] == [6, 8, 14, 16]


def test_a_resume_started_from_another_folder_finds_the_run_s_logs(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path / "runs")
    first = train(TrainConfig(epochs=1, out="exp1", tensorboard="", **TINY), log=lambda line: None)
    monkeypatch.chdir(tmp_path)
    more = resume(f"runs/exp1/checkpoints/checkpoint_{first.tag}.npz", 1, log=lambda line: None)
    assert more.config.tensorboard == f"runs/exp1/logs/{first.tag}"
    assert not (tmp_path / "exp1").exists()
    scalars, _, _ = read_log(tmp_path / "runs" / "exp1" / "logs" / first.tag)
    assert [s for s, _ in scalars["epoch/d_loss"]] == [8, 16]


def test_a_resume_without_the_tensorboard_package_trains_without_logging(tmp_path, monkeypatch):
    first = train(TrainConfig(epochs=1, out=str(tmp_path), tensorboard="", **TINY), log=lambda line: None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    lines = []
    more = resume(first.paths["checkpoint"], 1, log=lines.append)
    assert more.config.tensorboard is None and "this session does not log" in lines[0]
    assert more.epochs_done == 2


def test_a_folder_given_is_used_and_bad_settings_are_refused(tmp_path, capsys):
    assert main(["train", "--tensorboard", str(tmp_path / "tb"), "--tensorboard-every", "-1",
                 "--out", str(tmp_path)]) == 2
    assert "tensorboard_every must be an integer from 0" in capsys.readouterr().err
    run = train(TrainConfig(epochs=1, out=str(tmp_path), tensorboard=str(tmp_path / "tb"), tensorboard_every=0, **TINY),
                log=lambda line: None)
    scalars, _, _ = read_log(tmp_path / "tb")
    assert "steps/d_loss" not in scalars and [s for s, _ in scalars["epoch/d_loss"]] == [8]
    assert json.loads(run.paths["run_json"].read_text())["config"]["tensorboard"] == str(tmp_path / "tb")


def test_jax_without_tensorflow_writes_the_same_logs(tmp_path):
    result = cli_without_tensorflow("train", "--epochs", 1, "--images", 64, "--batch-size", 16, "--out", tmp_path,
                                    "--tensorboard", "--tensorboard-every", 2)
    assert result.returncode == 0, result.stderr
    [folder] = (tmp_path / "logs").iterdir()
    scalars, images, _ = read_log(folder)
    assert [s for s, _ in scalars["steps/d_loss"]] == [2, 4] and [s for s, _ in scalars["epoch/g_loss"]] == [4]
    assert [s for s, _, _ in images["samples/fixed_noise"]] == [4]


def test_a_record_cut_short_by_a_kill_is_dropped_with_the_points_after_the_resumed_step(tmp_path):
    writer = EventWriter(tmp_path)
    for step in (1, 2, 3, 4):
        writer.scalars(step, {"epoch/d_loss": step / 10})
    writer.close()
    whole = writer.path.read_bytes()
    writer.path.write_bytes(whole + whole[-40:-3])  # a kill -9 in the middle of a record
    drop_points_from(tmp_path, 3)
    scalars, _, _ = read_log(tmp_path)
    assert scalars["epoch/d_loss"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2))]
    assert len(list(tmp_path.iterdir())) == 1  # rewritten in place (by rename), no temporary left
    before = writer.path.read_bytes()
    drop_points_from(tmp_path, 3)  # nothing more to drop: untouched
    assert writer.path.read_bytes() == before
