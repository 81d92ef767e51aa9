"""TensorBoard for a run (`train --tensorboard [DIR]`): losses and speed, quality, the sample grid, the settings.

One writer for both backends: the `tensorboard` package's protocol buffers and record format, written to a
plain file, need no TensorFlow (the JAX-only GPU host) and are what TensorBoard itself reads. Steps are the
run's training steps counted from its first epoch (epoch E ends at step E x steps per epoch), so a resumed
run continues the same curves. What an interrupted session logged after the checkpoint a run resumes is
removed from the folder's earlier files first (rewritten by rename), so every step has one point in any
reader; a START session log at the resumed step says the same to readers that purge by it.
"""

import os
import socket
import time
from pathlib import Path

import keras
import numpy as np

from prendas.artifacts import atomic_path, png_bytes
from prendas.run import steps_done


def drop_points_from(folder, step):
    """Rewrite the event files in `folder` without their events at `step` or later (and without a record cut
    short by a kill); files with nothing to drop are left as they are."""
    import struct

    from tensorboard.compat.proto import event_pb2

    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        data, kept, offset, dropped = path.read_bytes(), [], 0, False
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            end = offset + 12 + length + 4
            if end > len(data):
                break
            record = data[offset:end]
            if event_pb2.Event.FromString(record[12:-4]).step < step:
                kept.append(record)
            else:
                dropped = True
            offset = end
        if dropped or offset != len(data):
            # (atomic_path's usual temporary keeps the name, "tfevents" and all, which TensorBoard would read as a
            # file of events)
            with atomic_path(path, temporary=f".rewrite.{os.getpid()}.tmp") as tmp:
                Path(tmp).write_bytes(b"".join(kept))


class EventWriter:
    """Append-only TensorBoard event file: scalars, images (PNG) and text, each at a step."""

    def __init__(self, folder):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = event_pb2, summary_pb2
        Path(folder).mkdir(parents=True, exist_ok=True)
        # TensorBoard reads every events.out.tfevents.* file of a folder, in name order (the time first).
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.prendas"
        self.path = Path(folder) / name
        self._records = RecordWriter(open(self.path, "ab"))  # noqa: SIM115 (closed by close())
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event):
        self._records.write(event.SerializeToString())

    def _add(self, step, summary):
        self._write(self._event.Event(wall_time=time.time(), step=int(step), summary=summary))

    def start_at(self, step):
        """Mark a (re)start at `step`: TensorBoard drops earlier files' points from this step on."""
        log = self._event.SessionLog(status=self._event.SessionLog.START)
        self._write(self._event.Event(wall_time=time.time(), step=int(step), session_log=log))

    def scalars(self, step, values):
        from tensorboard.plugins.scalar.summary_v2 import scalar_pb

        for tag, value in values.items():
            self._add(step, scalar_pb(tag, float(value)))

    def image(self, step, tag, pixels):
        """A uint8 grayscale image (H, W), stored as PNG."""
        height, width = np.shape(pixels)[:2]
        picture = self._summary.Summary.Image(height=height, width=width, colorspace=1,
                                              encoded_image_string=png_bytes(pixels))
        self._add(step, self._summary.Summary(value=[self._summary.Summary.Value(tag=tag, image=picture)]))

    def text(self, step, tag, markdown):
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._add(step, text_pb(tag, markdown))

    def hparams(self, values, trial):
        """The run's settings for TensorBoard's HPARAMS tab (its values: numbers, strings, booleans)."""
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        kept = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
        self._add(0, hparams_pb(kept, trial_id=trial, start_time_secs=int(time.time())))

    def flush(self):
        self._records.flush()

    def close(self):
        self._records.close()


class TensorBoardLog(keras.callbacks.Callback):
    """Writes a run's curves to config.tensorboard: every `tensorboard_every` steps the losses (their mean since the
    previous point, within the epoch) and images/s; each epoch the same over the epoch, the quality figures of
    --eval-every and the fixed-noise grid; at the start the settings (as a table and as hparams)."""

    def __init__(self, run, steps):
        super().__init__()
        self.run = run
        self.steps = steps  # per epoch
        self.every = run.config.tensorboard_every

    def on_train_begin(self, logs=None):
        run = self.run
        first = run.first_epoch * self.steps
        folder = Path(run.config.tensorboard)
        # A resumed run replaces what was logged after its checkpoint; a new run, what a run that died before its
        # first checkpoint (its tag then free again) left in its own folder, OUT/logs/TAG. A folder given is shared.
        if folder.is_dir() and (run.resumed_from or folder == Path(run.config.out) / "logs" / run.tag):
            drop_points_from(folder, first + 1)
        self.writer = EventWriter(run.config.tensorboard)
        self.writer.start_at(first + 1)
        settings = {"tag": run.tag, "recipe": run.config.recipe(), **run.config.to_dict()}
        table = "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in settings.items())
        self.writer.text(first, "settings", table)
        if run.first_epoch == 0:  # (one hparams session per run: a resumed run keeps its first)
            self.writer.hparams(run.config.to_dict(), trial=run.tag)
        self.writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last = epoch * self.steps
        self._point = (0, 0.0, 0.0, time.perf_counter())  # (steps, mean d_loss, mean g_loss) at the last point

    def on_train_batch_end(self, batch, logs=None):
        # The run's step: a point each time it passes a multiple of `every` (Keras calls this once per compiled
        # call of --steps-per-execution steps, so the multiple itself may be skipped).
        done = steps_done(batch, self.steps)
        step, last = self._epoch * self.steps + done, self._last
        self._last = step
        if not self.every or step // self.every == last // self.every or logs is None:
            return
        # Keras's logs hold the means over the epoch so far; the mean since the last point (or the epoch's start)
        # follows from two of them.
        steps, d_mean, g_mean = done, float(logs["d_loss"]), float(logs["g_loss"])
        before, d_before, g_before, started = self._point
        now = time.perf_counter()
        n = steps - before
        self.writer.scalars(step, {
            "steps/d_loss": (d_mean * steps - d_before * before) / n,
            "steps/g_loss": (g_mean * steps - g_before * before) / n,
            "steps/images_per_s": n * self.run.config.batch_size / (now - started),
        })
        self._point = (steps, d_mean, g_mean, now)
        self.writer.flush()  # (on disk at once: a run stopped by an exception never reaches on_train_end)

    def on_epoch_end(self, epoch, logs=None):
        run, step = self.run, (epoch + 1) * self.steps
        record = run.history[-1]
        self.writer.scalars(step, {"epoch/d_loss": record["d_loss"], "epoch/g_loss": record["g_loss"],
                                   "epoch/images_per_s": record["images_per_s"], "epoch/seconds": record["seconds"]})
        measured = run.evaluations[-1] if run.evaluations and run.evaluations[-1]["epoch"] == epoch + 1 else None
        if measured:
            self.writer.scalars(step, {f"quality/{k}": measured[k] for k in
                                       ("fid", "precision", "recall", "coverage", "classes_over_5pct")})
        self.writer.image(step, "samples/fixed_noise", run.frames[-1])
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()
