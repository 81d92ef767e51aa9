"""A run's life: its record, its checkpoints and final files, and the callbacks that write them.

`Run` holds what a run is (settings, tag, history, progress frames, quality measurements) and how it
is saved; the Keras callbacks below call it at the end of each epoch and of training, and print the
progress lines. File names come from prendas.artifacts.
"""

import datetime
import json
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np

from prendas import Diverged, artifacts, devices, format_seconds
from prendas.data import epoch_order
from prendas.models import in_precision
from prendas.precision import native_bf16
from prendas.sampling import balanced_labels, generate_images, latent_batch


class Run:
    """One training run: its settings, tag, history and files. The callbacks fill and save it."""

    def __init__(
        self, gan, config, data, tag, segments_before=(), history=(), frames=(), resumed_from=None, evaluations=(),
        best=None,
    ):
        self.gan = gan
        self.config = config
        self.data = data
        self.tag = tag
        self.evaluations = list(evaluations)  # quality measured during training, every config.eval_every epochs
        self.best = best  # the best measurement so far by config.keep_best: its epoch, value and files
        self.paths = artifacts.run_paths(config.out, tag, ema=config.averaged, evaluations=bool(config.eval_every or evaluations))
        self.segments_before = list(segments_before)
        self.history = list(history)  # one record per epoch, previous segments included
        self.frames = list(frames)  # the fixed batch's grid after each epoch, for the animation
        self.resumed_from = resumed_from
        # (the newest checkpoint of this run and the epochs it holds: where a stopped run continues from)
        self.last_checkpoint = (resumed_from, len(history)) if resumed_from else None
        self.first_epoch = len(self.history)
        self.last_epoch = self.first_epoch + config.epochs
        self.training_seconds_before = 0.0
        self.started = datetime.datetime.now().isoformat(timespec="seconds")
        self.session_start = None  # (clock() when this session began training, and at each epoch's end since)
        self.epoch_ends = []
        self.planned_epochs = None  # the epochs asked for, where --minutes stopped the run before them
        self.machine_name = devices.machine_name()  # read once (/proc/cpuinfo, the GPU list), not at every checkpoint
        self.native_bf16 = native_bf16()
        # A conditional GAN's grid has a column per class (8 x 10), the others are 8 x 8.
        self.grid_cols = 10 if gan.conditional else 8
        self.fixed_z = latent_batch(8 * self.grid_cols, gan.latent_dim, [config.seed, 3])
        self.fixed_labels = balanced_labels(len(self.fixed_z)) if gan.conditional else None

    @property
    def epochs_done(self):
        return len(self.history)

    def segments_done(self):
        return self.segments_before + [self.epochs_done - self.first_epoch]

    def sample_grid(self):
        images = generate_images(self.gan.sampler, self.fixed_z, self.fixed_labels)
        return artifacts.image_grid(images, cols=self.grid_cols, scale=2)

    def evaluate_now(self):
        """FID, precision, recall and class balance of eval_samples garments, against the test images."""
        from prendas.evaluate import Reference

        z = latent_batch(self.config.eval_samples, self.gan.latent_dim, [self.config.seed, 4, self.epochs_done])
        labels = balanced_labels(len(z)) if self.gan.conditional else None
        scores = Reference.shared().score(generate_images(self.gan.sampler, z, labels), full=False, labels=labels)
        keep = ("fid", "precision", "recall", "coverage", "recall_per_class", "coverage_per_class", "classes_over_5pct",
                "kl_from_uniform", "classifier_score", "label_agreement")  # (the last: conditional runs only)
        self.evaluations.append({"epoch": self.epochs_done, "n": len(z), **{k: scores[k] for k in keep if k in scores}})

    def out_of_time(self):
        """With --minutes: whether the next epoch is expected to end past the budget (at the pace of the last one,
        its measurement and checkpoint included), counted from this session's start."""
        if not self.config.minutes or self.epochs_done >= self.last_epoch:
            return False
        now = self.epoch_ends[-1]
        last = now - (self.epoch_ends[-2] if len(self.epoch_ends) > 1 else self.session_start)
        return now - self.session_start + last > self.config.minutes * 60

    def stop_here(self):
        """End the run after this epoch (--minutes): its files take the tag of the epochs it did ("2026-12-08-0130_6ep_
        60000imgs", not the 20 asked for). Everything is written under the new tag (this session's best so far too,
        copied and naming it) before the old names go, so a run killed meanwhile still resumes from either."""
        self.planned_epochs, self.last_epoch = self.config.epochs, self.epochs_done
        when = datetime.datetime.strptime(self.tag[:15], "%Y-%m-%d-%H%M")
        tag = artifacts.claim_tag(self.config.out, artifacts.run_tag(self.segments_done(), self.config.images, when))
        before, self.tag = self.paths, tag
        self.paths = artifacts.run_paths(self.config.out, tag, ema=self.config.averaged,
                                         evaluations=bool(self.config.eval_every or self.evaluations))
        gone = [before["run_json"]]
        if before["checkpoint"] != self.paths["checkpoint"] and str(before["checkpoint"]) != self.resumed_from:
            gone.append(before["checkpoint"])
        if self.best and Path(self.best["generator"]) == before.get("generator_best"):  # this session's best
            self.best = {**self.best, "generator": str(self.paths["generator_best"]),
                         "checkpoint": str(self.paths["checkpoint_best"])}
            self._best_under_this_tag(before)
            gone += [before[name] for name in ("generator_best", "evaluation_best", "checkpoint_best")]
        self.save_checkpoint()
        for path in gone:
            path.unlink(missing_ok=True)

    def _best_under_this_tag(self, before):
        """The best generator so far, its evaluation and its checkpoint, written again under this tag, naming it."""
        artifacts.copy_file(before["generator_best"], self.paths["generator_best"])
        evaluation = json.loads(before["evaluation_best"].read_text())
        artifacts.write_json(self.paths["evaluation_best"], {**evaluation, "model": self.best["generator"],
                                                             "run": {**evaluation["run"], "tag": self.tag}})
        meta, frames, groups = artifacts.load_checkpoint(before["checkpoint_best"])
        meta = {**meta, "tag": self.tag, "best": self.best, "files": {k: str(p) for k, p in self.paths.items()}}
        artifacts.save_checkpoint(self.paths["checkpoint_best"], groups, meta, frames)

    def record(self, status):
        """The run.json contents."""
        return {
            "tag": self.tag,
            "status": status,
            "epochs_done": self.epochs_done,
            "segments": self.segments_done(),
            "resumed_from": self.resumed_from,
            "config": self.config.to_dict(),
            "data": self.data,
            "started": self.started,
            "updated": datetime.datetime.now().isoformat(timespec="seconds"),
            "training_seconds": round(
                self.training_seconds_before + sum(h["seconds"] for h in self.history[self.first_epoch :]), 3),
            "history": self.history,
            "evaluations": self.evaluations,
            "best": self.best,
            **({"stopped_by_minutes": {"minutes": self.config.minutes, "epochs_asked": self.planned_epochs}}
               if self.planned_epochs else {}),
            "files": {name: str(path) for name, path in self.paths.items()},
            "versions": devices.versions(),
            "machine": {"name": self.machine_name, "platform": platform.platform(), "processor": platform.machine(),
                        "backend": keras.backend.backend(), "native_bf16": self.native_bf16,
                        "precision": self.gan.generator.dtype_policy.name,
                        "devices": devices.replicas(self.gan), "machines": devices.machines()},
        }

    def save_checkpoint(self, path=None):
        record = self.record("running")  # run.json says "complete" only once save_final has written every file
        meta = {"format": artifacts.CHECKPOINT_FORMAT, "version": artifacts.CHECKPOINT_VERSION, **record,
                "status": "running" if self.epochs_done < self.last_epoch else "complete"}
        artifacts.save_checkpoint(path or self.paths["checkpoint"], self.gan.state_variables(), meta, self.frames)
        if path is None:  # (a copy elsewhere, the best so far, leaves the run's own files as they are)
            self.last_checkpoint = (str(self.paths["checkpoint"]), self.epochs_done)
            artifacts.write_json(self.paths["run_json"], record)

    def keep_if_best(self):
        """After a measurement: if it is the best so far by config.keep_best, write the generator that drew it,
        the measurement and a checkpoint to resume from, under the run's _best_ names."""
        by, measured = self.config.keep_best, self.evaluations[-1]
        value, best = measured[by], self.best
        if best is not None and best["by"] == by and not (value < best["value"] if by == "fid" else value > best["value"]):
            return
        paths = self.paths
        self.best = {"by": by, "value": value, "epoch": self.epochs_done, "generator": str(paths["generator_best"]),
                     "checkpoint": str(paths["checkpoint_best"])}
        save_network(self.gan.sampler, paths["generator_best"])
        metrics = {k: v for k, v in measured.items() if k not in ("epoch", "n")}
        artifacts.write_json(paths["evaluation_best"], {
            "model": str(paths["generator_best"]), "n": measured["n"], "epoch": self.epochs_done, "kept_by": by,
            "reference": "the 10,000 test images", "during_training": True, "metrics": metrics,
            "run": {"tag": self.tag, "config": self.config.to_dict()}})
        self.save_checkpoint(paths["checkpoint_best"])

    def save_final(self):
        """Models, grid, five single images and the animation; run.json last, marking the run complete."""
        paths = self.paths
        save_network(self.gan.sampler, paths["generator"])  # the moving average, when there is one
        if self.config.averaged:
            save_network(self.gan.generator, paths["generator_raw"])  # the weights as trained, to compare
        save_network(self.gan.discriminator, paths["discriminator"])
        artifacts.save_png(self.frames[-1], paths["grid"])
        labels = None if self.fixed_labels is None else self.fixed_labels[:5]
        samples = generate_images(self.gan.sampler, self.fixed_z[:5], labels)
        for i, image in enumerate(samples):
            artifacts.save_png(np.kron(image, np.ones((4, 4), np.uint8)), paths[f"image_{i}"])
        artifacts.save_gif(self.frames, paths["progress_gif"])
        if self.evaluations:
            artifacts.save_figure(quality_figure(self.evaluations), paths["quality_curve"])
        artifacts.write_json(paths["run_json"], self.record("complete"))


def save_network(model, path):
    """A network as a .keras file that computes in its weights' precision when loaded (float32; float64 for a float64
    run), whatever precision trained it, and that any backend loads (its BatchNorm unsynchronized)."""
    with devices.unsynchronized(model):
        artifacts.save_model(in_precision(model, model.weights[0].dtype), path)


def quality_figure(evaluations):
    """FID (left) and precision, recall and coverage (right) against the epoch."""
    from matplotlib.figure import Figure

    epochs = [e["epoch"] for e in evaluations]
    fig = Figure(figsize=(9, 3.4))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [e["fid"] for e in evaluations], "o-")
    left.set_ylabel(f"FID ({evaluations[-1]['n']:,} samples, lower is better)")
    for key in ("precision", "recall", "coverage"):  # (coverage: not in runs measured before it was kept)
        if all(key in e for e in evaluations):
            right.plot(epochs, [e[key] for e in evaluations], "o-", label=key)
    right.set_ylim(0, 1)
    right.legend()
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def clock():
    """The seconds --minutes counts (time.perf_counter; a test gives its own)."""
    return time.perf_counter()


class RunRecorder(keras.callbacks.Callback):
    """Orders each epoch's images; keeps the run's history and frames; checkpoints every K epochs; writes the final files.

    It touches the host only at epoch ends, so training steps are never synchronised with it.
    """

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_train_begin(self, logs=None):
        self.run.session_start = clock()

    def on_epoch_begin(self, epoch, logs=None):
        # The epoch's order of images, drawn from (seed, epoch): one small transfer, the images stay on the device.
        self.run.gan.set_epoch_order(epoch_order(int(self.run.gan.epoch_order.shape[0]), self.run.config.seed, epoch))
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        run = self.run
        seconds = time.perf_counter() - self._started
        _check_finite(run, epoch + 1, logs)  # before anything of this epoch is kept or written
        run.history.append(
            {
                "epoch": epoch + 1,
                "d_loss": float(logs["d_loss"]),
                "g_loss": float(logs["g_loss"]),
                "seconds": round(seconds, 3),
                "images_per_s": round(run.data["images"] / seconds, 1),
            }
        )
        run.frames.append(run.sample_grid())
        if run.config.eval_every and (epoch + 1) % run.config.eval_every == 0:
            run.evaluate_now()
            if run.config.keep_best != "none":
                run.keep_if_best()
        run.epoch_ends.append(clock())
        if run.out_of_time():  # (--minutes) this epoch is the run's last: checkpointed under the tag of what it did
            run.stop_here()
            self.model.stop_training = True
        elif (epoch + 1 - run.first_epoch) % run.config.checkpoint_every == 0 or epoch + 1 == run.last_epoch:
            run.save_checkpoint()

    def on_train_end(self, logs=None):
        if self.run.epochs_done == self.run.last_epoch:
            self.run.save_final()


class ProgressLogger(keras.callbacks.Callback):
    """One line per epoch: losses, images per second, time left. On a terminal, a live line within it."""

    # Keras may call batch hooks from a worker thread; this one only counts and prints.
    async_safe = True

    def __init__(self, run, log=print, live=None):
        super().__init__()
        self.run = run
        self.log = log
        self.live = sys.stdout.isatty() if live is None else live

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._started = self._shown = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.live and now - self._shown > 1.0:
            self._shown = now
            steps, elapsed = self.params["steps"], now - self._started
            done = steps_done(batch, steps)
            rate = done * self.run.config.batch_size / elapsed
            epoch_left, run_left = time_left(self.run, self._epoch, done, steps, elapsed)
            print(f"\repoch {self._epoch + 1}/{self.run.last_epoch}  step {done}/{steps}  {rate:,.0f} img/s  "
                  f"epoch left {format_seconds(epoch_left)}  run left {format_seconds(run_left)}\x1b[K", end="", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        run = self.run
        record = run.history[-1]
        times = [h["seconds"] for h in run.history[-(epoch + 1 - run.first_epoch) :]]
        eta = sum(times) / len(times) * (run.last_epoch - epoch - 1)
        if run.config.minutes and run.epoch_ends:  # (no later than the budget; RunRecorder noted this epoch's end)
            eta = min(eta, max(0.0, run.config.minutes * 60 - (run.epoch_ends[-1] - run.session_start)))
        asked = run.first_epoch + run.planned_epochs if run.planned_epochs else run.last_epoch  # (--minutes stopped it)
        width = len(str(asked))
        end = "\r\x1b[K" if self.live else ""  # clear the live line
        self.log(
            f"{end}epoch {epoch + 1:>{width}}/{asked}  d_loss {record['d_loss']:.4f}  "
            f"g_loss {record['g_loss']:.4f}  {record['images_per_s']:,.0f} img/s  "
            f"{record['seconds']:.1f}s  eta {format_seconds(eta)}{_quality(run, epoch)}"
            + (f"\n--minutes {run.config.minutes:g}: the next epoch would end past {format_seconds(run.config.minutes * 60)}"
               f", so the run stops after {run.epochs_done} of {asked} epochs"
               if run.planned_epochs and epoch + 1 == run.last_epoch else "")
        )


def steps_done(batch, steps):
    """How many of an epoch's `steps` are done when Keras reports batch `batch` (on_train_batch_end): batch + 1, but
    Keras numbers a short last call of --steps-per-execution as if it were whole."""
    return min(batch + 1, steps)


def time_left(run, epoch, done, steps, elapsed):
    """Seconds left (in this epoch, in the run) at step `done` of `steps` of `epoch` (0-based), `elapsed` into it.

    The epoch's rest at its own pace so far; the epochs after it at the mean of this session's finished epochs
    (the first epoch's pace, compilation included, until one has finished).
    """
    epoch_left = elapsed / done * (steps - done)
    finished = [h["seconds"] for h in run.history[run.first_epoch :]]
    per_epoch = sum(finished) / len(finished) if finished else elapsed / done * steps
    run_left = epoch_left + per_epoch * (run.last_epoch - epoch - 1)
    if run.config.minutes and run.session_start is not None:  # (--minutes: no later than the budget, after this epoch)
        run_left = min(run_left, max(epoch_left, run.config.minutes * 60 - (clock() - run.session_start)))
    return epoch_left, run_left


def _check_finite(run, epoch, logs):
    """Raise Diverged if the epoch's mean losses or any number a checkpoint would hold (weights, BatchNorm
    statistics, optimizer moments) is not finite (NaN or infinity).

    Checked once an epoch, on the epoch's mean losses (a NaN in any step makes the mean NaN) and on the
    state (a copy to the host, small beside an epoch), so no step waits for the host.
    """
    bad = [name for name in ("d_loss", "g_loss") if not np.isfinite(float(logs[name]))]
    names = {"ema_generator": "moving average", "g_optimizer": "generator's Adam", "d_optimizer": "discriminator's Adam"}
    bad += [names.get(group, group) for group in artifacts.non_finite_groups(run.gan.state_variables())]
    if bad:
        last = "{} (epoch {})".format(*run.last_checkpoint) if run.last_checkpoint else "none: the run wrote none"
        raise Diverged(
            f"training diverged in epoch {epoch}: {', '.join(bad)} not finite (NaN or infinity); nothing of this "
            f"epoch was written; last good checkpoint: {last}. Try a lower --lr (or --g-lr/--d-lr), float32 "
            f"--precision, or a gradient penalty (--r1)"
        )


def _quality(run, epoch):
    if not run.evaluations or run.evaluations[-1]["epoch"] != epoch + 1:
        return ""
    e = run.evaluations[-1]
    return (f"  fid {e['fid']:.1f}  precision {e['precision']:.2f}  recall {e['recall']:.2f}  classes {e['classes_over_5pct']}"
            f"  coverage {e['coverage']:.2f}" + (f"  asked=seen {e['label_agreement']:.0%}" if "label_agreement" in e else ""))

