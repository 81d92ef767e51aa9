"""Progress a person can read: within an epoch, the time left for the epoch and for the run, in the terminal
and in the notebook's bar."""

import types

import pytest

from prendas import run as run_module
from prendas.notebook import NotebookMonitor
from prendas.run import ProgressLogger, time_left


def _run(history_seconds, first_epoch=0, last_epoch=5, batch_size=100):
    history = [{"epoch": i + 1, "seconds": s} for i, s in enumerate(history_seconds)]
    config = types.SimpleNamespace(batch_size=batch_size, epochs=last_epoch - first_epoch, minutes=0.0)
    return types.SimpleNamespace(history=history, first_epoch=first_epoch, last_epoch=last_epoch, config=config,
                                 planned_epochs=None, session_start=None)


def test_time_left_in_the_first_epoch_follows_its_own_pace():
    # Step 10 of 40 after 20 s: 60 s left in the epoch; 4 more epochs of 80 s each.
    assert time_left(_run([]), 0, 10, 40, 20.0) == pytest.approx((60.0, 60.0 + 4 * 80.0))


def test_time_left_after_an_epoch_takes_the_finished_epochs_pace_for_the_rest():
    # Epochs of 50 s and 70 s done (this session), epoch 3 (index 2) half done after 40 s: 40 s left in it,
    # then 2 epochs at the mean 60 s.
    assert time_left(_run([50.0, 70.0]), 2, 20, 40, 40.0) == pytest.approx((40.0, 40.0 + 2 * 60.0))


def test_a_resumed_run_counts_only_its_own_epochs():
    # Epochs 1-3 came from the checkpoint (their times from another machine); this session finished epoch 4 in 10 s.
    run = _run([500.0, 500.0, 500.0, 10.0], first_epoch=3, last_epoch=6)
    assert time_left(run, 4, 5, 10, 5.0) == pytest.approx((5.0, 5.0 + 1 * 10.0))


def test_the_terminal_line_shows_the_time_left(monkeypatch, capsys):
    clock = iter([100.0, 130.0])
    monkeypatch.setattr(run_module.time, "perf_counter", lambda: next(clock))
    logger = ProgressLogger(_run([]), log=print, live=True)
    logger.set_params({"steps": 40})
    logger.on_epoch_begin(0)  # at 100 s
    # 10 steps at 130 s: 30 s for a quarter of the epoch, so 90 s left in it and 4 epochs of 120 s after it
    logger.on_train_batch_end(9)
    line = capsys.readouterr().out
    assert line.startswith("\repoch 1/5  step 10/40  33 img/s  epoch left 1m30s  run left 9m30s"), line


def test_the_notebook_bar_shows_the_time_left():
    monitor = NotebookMonitor()
    monitor.set_run(_run([60.0], last_epoch=4))
    monitor._started = __import__("time").perf_counter()
    html = monitor._bar_html(1.5, (30.0, 150.0))
    assert "epoch 2/4" in html and "this epoch: 0m30s left" in html and "the run: about 2m30s left" in html
    between = monitor._bar_html(2.0, (0.0, 120.0))  # at the end of epoch 2: no epoch under way
    assert "epoch 2/4 done" in between and "this epoch" not in between and "the run: about 2m00s left" in between
    assert "epoch 1/4 &middot;" in monitor._bar_html(0.0)  # before the first step
    assert "left" not in monitor._bar_html(4.0, (0.0, 0.0))  # finished: nothing left to announce


def test_with_minutes_the_time_left_ends_with_the_budget_and_the_bar_measures_time(monkeypatch):
    """--minutes 5, 200 s into the session, epoch 2 of at most 10 half done (30 s left in it, 60 s an epoch): the run
    has about 100 s left, not 8 more epochs; the notebook's bar fills with the time, not the epochs."""
    run = _run([60.0], last_epoch=10)
    run.config.minutes, run.session_start = 5.0, 1000.0
    monkeypatch.setattr(run_module, "clock", lambda: 1200.0)
    assert time_left(run, 1, 20, 40, 30.0) == pytest.approx((30.0, 100.0))
    monitor = NotebookMonitor()
    monitor.set_run(run)
    monitor._started = __import__("time").perf_counter() - 200
    html = monitor._bar_html(1.5, (30.0, 100.0))
    assert 'max="300.0"' in html and "epoch 2 &middot; 3m20s elapsed of at most about 5m00s" in html
    run.last_epoch, run.planned_epochs = 2, None  # its last epoch asked for, the budget not reached: nothing to say
    assert "the run stops here" not in monitor._bar_html(2.0)
    run.planned_epochs = 10  # the run stopped there (Run.stop_here)
    assert "the run stops here: 2 epochs fit" in monitor._bar_html(2.0)
