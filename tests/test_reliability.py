"""What a long run meets (issue 18): divergence, a write the system refuses, a folder that cannot be made,
leftovers of a killed run, resuming by folder, two runs at once in one folder, and the best generator kept."""

import errno
import json
import multiprocessing
import os

import numpy as np
import pytest
from conftest import files_under

from prendas import Diverged, PrendasError, artifacts, sampling
from prendas.__main__ import main
from prendas.config import TrainConfig
from prendas.train import resume, train

TINY = dict(images=256, batch_size=64, latent_dim=16)
# Adam with both betas 0 steps every weight by the learning rate each step: at rate 1 the hinge GAN's
# activations overflow within three epochs.
DIVERGING = ["--loss", "hinge", "--lr", "1", "--beta-1", "0", "--beta-2", "0"]


def _cli(*args):
    return main([str(a) for a in args])


def _tiny_cli(out, *args):
    return _cli("train", "--images", 256, "--batch-size", 64, "--latent-dim", 16, "--out", out, *args)


def _finite_checkpoint(path):
    _, _, saved = artifacts.load_checkpoint(path)
    return all(np.isfinite(a).all() for arrays in saved.values() for a in arrays if np.issubdtype(a.dtype, np.floating))


# ---- divergence ----------------------------------------------------------------------------


def test_a_diverging_run_stops_with_a_status_of_its_own_and_keeps_its_last_good_checkpoint(tmp_path, capsys):
    assert _tiny_cli(tmp_path, "--epochs", 8, *DIVERGING) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "diverged in epoch" in err and "--lr" in err, err
    epoch = int(err.split("diverged in epoch ")[1].split(":")[0])
    [checkpoint] = (tmp_path / "checkpoints").glob("checkpoint_*.npz")
    meta, frames, _ = artifacts.load_checkpoint(checkpoint)
    assert meta["epochs_done"] == epoch - 1 == len(frames) and f"{checkpoint} (epoch {epoch - 1})" in err
    assert _finite_checkpoint(checkpoint)  # nothing non-finite was written: no model, no checkpoint
    assert not list(tmp_path.glob("models/*.keras")) and not list(tmp_path.rglob(".*tmp*"))
    record = json.loads(next(tmp_path.glob("models/run_*.json")).read_text())
    assert record["epochs_done"] == epoch - 1 and all(np.isfinite(h["d_loss"]) for h in record["history"])


def test_a_checkpoint_with_non_finite_weights_is_not_resumed(tmp_path):
    run = train(TrainConfig(epochs=1, out=str(tmp_path), **TINY), log=lambda line: None)
    with np.load(run.paths["checkpoint"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["generator/0"] = np.full_like(arrays["generator/0"], np.nan)
    bad = tmp_path / "checkpoints" / "checkpoint_bad.npz"
    with open(bad, "wb") as f:
        np.savez(f, **arrays)
    before = files_under(tmp_path)
    with pytest.raises(Diverged, match="non-finite weights .* cannot be resumed"):
        resume(bad, 1, log=lambda line: None)
    assert files_under(tmp_path) == before


# ---- writes the system refuses, folders that cannot be made --------------------------------


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_a_refused_write_names_the_file_keeps_the_old_one_and_leaves_no_temporary_file(tmp_path, monkeypatch, error):
    path = tmp_path / "models" / "run_T.json"
    artifacts.write_json(path, {"old": 1})

    def refuse(*args, **kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(artifacts.os, "fsync", refuse)  # after the temporary file was written, before the rename
    with pytest.raises(PrendasError, match=f"could not write {path}: {os.strerror(error)}"):
        artifacts.write_json(path, {"new": 2})
    assert json.loads(path.read_text()) == {"old": 1} and files_under(tmp_path) == ["models/run_T.json"]


def test_a_full_disk_during_a_run_stops_it_in_one_line_with_the_previous_checkpoint_intact(tmp_path, monkeypatch, capsys):
    calls = []
    real = np.savez

    def savez_until_full(f, **arrays):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint: a few bytes, then the disk is full
            f.write(b"PK\x03\x04partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays)

    monkeypatch.setattr(artifacts.np, "savez", savez_until_full)
    assert _tiny_cli(tmp_path, "--epochs", 3) == 2
    err = capsys.readouterr().err.strip()
    [checkpoint] = (tmp_path / "checkpoints").glob("checkpoint_*.npz")
    assert err == (f"prendas train: error: could not write {checkpoint}: No space left on device "
                   "(the previous file, if any, is intact)")
    assert artifacts.load_checkpoint(checkpoint)[0]["epochs_done"] == 1
    assert not list(tmp_path.rglob(".*tmp*"))


@pytest.mark.parametrize("command", [
    ["train", "--epochs", 1, "--out", "/proc/prendas-test"],
    ["generate", "--model", "MODEL", "--out", "/proc/prendas-test.png"],
    ["evaluate", "--model", "MODEL", "--json", "/proc/prendas-test.json"],
    ["results", "--out", "/proc/prendas-test.md", "."],
], ids=["train", "generate", "evaluate", "results"])
def test_an_output_that_cannot_be_written_is_one_line_and_no_traceback(command, capsys, shipped_generator_path):
    command = [shipped_generator_path if c == "MODEL" else c for c in command]
    assert _cli(*command) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"prendas {command[0]}: error: cannot write under /proc") and "\n" not in err, err


@pytest.fixture
def shipped_generator_path():
    from conftest import ROOT

    return next((ROOT / "models").glob("generator_*.keras"))


# ---- leftovers, resuming by folder, two runs at once ---------------------------------------


def test_leftovers_of_a_killed_run_are_removed_and_nothing_else(tmp_path):
    dead = 2**22 + 1  # above Linux's largest pid: no such process
    leftovers = [f"checkpoints/.checkpoint_T.{dead}.tmp.npz", f"models/.generator_T.{dead}.tmp.keras",
                 f"images/.grid_T.{dead}.tmp.png", f"models/.run_T.{dead}.tmp.json"]
    kept = [f"checkpoints/.checkpoint_T.{os.getpid()}.tmp.npz",  # a live process's: being written right now
            f"checkpoints/.notes.{dead}.tmp.txt", f"models/.mine.{dead}.tmp.keras", "images/.hidden.png",
            f"checkpoints/.checkpoint_T.{dead}.tmp.npz.bak", "models/run_other.json"]
    for name in leftovers + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "models" / "run_A.json").write_text(json.dumps({"tag": "A", "status": "starting", "pid": dead}))
    (tmp_path / "models" / "run_B.json").write_text(json.dumps({"tag": "B", "status": "starting", "pid": os.getpid()}))
    lines = []
    run = train(TrainConfig(epochs=1, out=str(tmp_path), **TINY), log=lines.append)
    assert lines[0].startswith("removed 5 files left by stopped runs: ")
    assert not any((tmp_path / name).exists() for name in leftovers) and not (tmp_path / "models/run_A.json").exists()
    assert all((tmp_path / name).exists() for name in kept) and (tmp_path / "models/run_B.json").exists()
    assert run.paths["checkpoint"].is_file()


def test_resume_takes_a_run_folder_and_picks_its_newest_checkpoint(tmp_path, capsys):
    first = train(TrainConfig(epochs=1, out=str(tmp_path), **TINY), log=lambda line: None)
    second = train(TrainConfig(epochs=1, seed=1, out=str(tmp_path), **TINY), log=lambda line: None)
    os.utime(first.paths["checkpoint"], (1, 1))  # older
    lines = []
    run = resume(tmp_path, 1, log=lines.append)
    assert lines[0] == f"resuming from {second.paths['checkpoint']}, the newest of 2 checkpoints in {tmp_path / 'checkpoints'}"
    assert run.resumed_from == str(second.paths["checkpoint"]) and run.config.seed == 1 and run.epochs_done == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli("train", "--resume", empty, "--epochs", 1) == 2
    assert f"no checkpoint in {empty}" in capsys.readouterr().err


def _claim(folder, barrier, tags):
    barrier.wait()  # all at once
    tags.put(artifacts.claim_tag(folder, "2026-01-01-0000_1ep_64imgs"))


def test_runs_started_at_once_in_one_folder_claim_different_tags(tmp_path):
    context = multiprocessing.get_context("fork")  # (the children only touch files)
    barrier, tags = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_claim, args=(str(tmp_path), barrier, tags)) for _ in range(6)]
    for p in processes:
        p.start()
    tags = [tags.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(timeout=60)
    assert len(set(tags)) == 6 and "2026-01-01-0000_1ep_64imgs" in tags
    for tag in tags:
        assert json.loads((tmp_path / "models" / f"run_{tag}.json").read_text())["status"] == "starting"


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_claim(tmp_path, monkeypatch):
    from prendas import run as run_module

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(run_module.Run, "sample_grid", fail)
    with pytest.raises(RuntimeError, match="boom"):
        train(TrainConfig(epochs=1, out=str(tmp_path), **TINY), log=lambda line: None)
    assert not list(tmp_path.glob("models/run_*.json"))


# ---- the best generator so far -------------------------------------------------------------


@pytest.mark.parametrize("by", ["fid", "recall"])
def test_the_best_generator_so_far_is_kept_with_its_evaluation_and_checkpoint(tmp_path, by):
    config = TrainConfig(epochs=3, eval_every=1, eval_samples=100, keep_best=by, out=str(tmp_path), **TINY)
    run = train(config, log=lambda line: None)
    values = [e[by] for e in run.evaluations]
    best_epoch = 1 + (int(np.argmin(values)) if by == "fid" else int(np.argmax(values)))
    assert run.best["epoch"] == best_epoch and run.best["value"] == values[best_epoch - 1] and run.best["by"] == by
    saved = json.loads(run.paths["evaluation_best"].read_text())
    assert saved["epoch"] == best_epoch and saved["kept_by"] == by and saved["metrics"][by] == values[best_epoch - 1]
    assert json.loads(run.paths["run_json"].read_text())["best"] == run.best
    generator = sampling.load_generator(run.paths["generator_best"])
    assert generator.count_params() == run.gan.generator.count_params()
    meta = artifacts.load_checkpoint(run.paths["checkpoint_best"])[0]
    assert meta["epochs_done"] == best_epoch
    # the best point resumes; a folder's newest checkpoint is never the best one (it is the run's own)
    again = resume(run.paths["checkpoint_best"], 1, log=lambda line: None)
    assert again.epochs_done == best_epoch + 1 and again.resumed_from == str(run.paths["checkpoint_best"])
    assert artifacts.model_tag(run.paths["generator_best"]) == run.tag


def test_keep_best_none_keeps_nothing(tmp_path):
    run = train(TrainConfig(epochs=1, eval_every=1, eval_samples=100, keep_best="none", out=str(tmp_path), **TINY),
                log=lambda line: None)
    assert run.best is None and not run.paths["generator_best"].exists() and not run.paths["checkpoint_best"].exists()
