"""A run's generator at any moment: `generate` and `evaluate` draw from a checkpoint (with the moving average
where the run keeps one), and a run stopped before its end says how to go on from its last checkpoint."""

import json

import keras
import numpy as np
import pytest

from prendas import PrendasError, sampling
from prendas.__main__ import main
from prendas.config import TrainConfig
from prendas.sampling import generate_images, latent_batch
from prendas.train import train

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)

TINY = dict(images=256, batch_size=64, latent_dim=16)


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    """Two epochs of a conditional run that keeps a moving average (which draws its samples and saved model)."""
    out = tmp_path_factory.mktemp("averaged")
    return train(TrainConfig(epochs=2, out=str(out), conditional=True, ema=0.9, **TINY), log=lambda line: None)


def test_a_checkpoint_draws_what_the_run_saved_as_its_generator(averaged_run):
    z = latent_batch(20, 16, 5)
    saved = sampling.load_generator(averaged_run.paths["generator"])  # the moving average
    raw = sampling.load_generator(averaged_run.paths["generator_raw"])  # the weights as trained
    drawn = sampling.load_generator(averaged_run.paths["checkpoint"])
    assert np.array_equal(generate_images(drawn, z), generate_images(saved, z))
    assert not np.array_equal(generate_images(drawn, z), generate_images(raw, z))
    about = sampling.checkpoint_about(averaged_run.paths["checkpoint"])
    assert (about["tag"], about["epoch"], about["weights"]) == (averaged_run.tag, 2, "moving average")


def test_without_an_average_the_checkpoint_draws_the_generator_as_trained(tmp_path):
    run = train(TrainConfig(epochs=1, out=str(tmp_path), **TINY), log=lambda line: None)
    z = latent_batch(12, 16, 1)
    saved = sampling.load_generator(run.paths["generator"])
    assert np.array_equal(generate_images(sampling.load_generator(run.paths["checkpoint"]), z), generate_images(saved, z))
    assert sampling.checkpoint_about(run.paths["checkpoint"])["weights"] == "generator as trained"
    with pytest.raises(PrendasError, match="latent vector of size 16, not 100"):
        sampling.load_generator(run.paths["checkpoint"], latent_dim=100)


def test_generate_and_evaluate_take_a_checkpoint(averaged_run, tmp_path, capsys):
    checkpoint = averaged_run.paths["checkpoint"]
    assert main([str(a) for a in ("generate", "--model", checkpoint, "--class", "bag", "--n", 6, "--seed", 3,
                                  "--out", tmp_path / "bags.png")]) == 0
    out = capsys.readouterr().out
    assert f"wrote 6 Bag images to {tmp_path / 'bags.png'} (run {averaged_run.tag} after epoch 2, its moving average)" in out
    assert (tmp_path / "bags.png").stat().st_size > 0
    assert main(["evaluate", "--model", str(checkpoint), "--n", "100"]) == 0
    written = checkpoint.with_name(f"evaluation_checkpoint_{averaged_run.tag}_epoch2.json")
    result = json.loads(written.read_text())
    assert result["checkpoint"]["epoch"] == 2 and result["checkpoint"]["weights"] == "moving average"
    assert result["run"]["config"]["ema"] == 0.9 and 0 <= result["metrics"]["precision"] <= 1
    assert "samples by run" in capsys.readouterr().out


def test_a_file_that_is_no_checkpoint_is_one_line_and_nothing_written(tmp_path, capsys):
    np.savez(tmp_path / "weights.npz", a=np.zeros(3))
    assert main(["generate", "--model", str(tmp_path / "weights.npz"), "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "weights.npz is not a readable prendas checkpoint" in err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["evaluate", "--model", str(tmp_path / "notes.txt")]) == 2
    assert "is not a .keras model file (a zip archive saved by Keras) nor a run's checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "weights.npz"]


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_run_says_how_to_continue_it_and_draw_from_it(tmp_path):
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(TrainConfig(epochs=5, out=str(tmp_path), **TINY), callbacks=[_StopAt(2)], log=lambda line: None)
    [checkpoint] = (tmp_path / "checkpoints").glob("checkpoint_*.npz")
    [note] = stopped.value.__notes__  # shown under the traceback (a notebook) and by the command line
    assert note.startswith("run ") and "interrupted in epoch 3" in note and "holds 2 epochs" in note, note
    assert f"--resume {checkpoint} --epochs N" in note and f"generate --model {checkpoint}" in note
    assert sampling.checkpoint_about(checkpoint)["epoch"] == 2
    assert generate_images(sampling.load_generator(checkpoint), latent_batch(4, 16, 0)).shape == (4, 28, 28)
    [record] = (tmp_path / "models").glob("run_*.json")
    assert json.loads(record.read_text())["status"] == "interrupted"  # not "running": nothing runs


def test_the_command_line_prints_the_note_once_and_names_itself_as_it_was_called(monkeypatch, capsys, tmp_path):
    import sys

    from prendas import command
    from prendas import train as training

    def stopped(config):
        error = KeyboardInterrupt()
        error.add_note("run T interrupted in epoch 3; its last checkpoint, c.npz, holds 2 epochs. Continue it: ...")
        raise error

    monkeypatch.setattr(training, "train", stopped)
    assert main(["train", "--out", str(tmp_path)]) == 130
    out, err = capsys.readouterr()
    assert err == "prendas train: run T interrupted in epoch 3; its last checkpoint, c.npz, holds 2 epochs. Continue it: ...\n"
    monkeypatch.setattr(training, "train", lambda config: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["train", "--out", str(tmp_path)]) == 130
    assert "before the run wrote its first checkpoint: there is nothing to continue" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/prendas", "train"])
    assert command() == "prendas"
    monkeypatch.setattr(sys, "argv", ["/repo/prendas/__main__.py", "train"])
    assert command() == "python -m prendas"
