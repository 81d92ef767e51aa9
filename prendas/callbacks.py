"""Side effects during training: the run's record, checkpoints and final files, and progress lines."""

import sys
import time

import keras

from prendas.data import epoch_order


class EpochOrder(keras.callbacks.Callback):
    """Before each epoch, hands the GAN the order in which it visits its images, drawn from (seed, epoch).

    One small transfer per epoch: the images themselves never leave the device.
    """

    def __init__(self, gan, seed):
        super().__init__()
        self.gan = gan
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        self.gan.set_epoch_order(epoch_order(int(self.gan.epoch_order.shape[0]), self.seed, epoch))


class RunRecorder(keras.callbacks.Callback):
    """Keeps the run's history and progress frames; checkpoints every K epochs; writes the final files.

    It touches the host only at epoch ends, so training steps are never synchronised with it.
    """

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        run = self.run
        seconds = time.perf_counter() - self._started
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
        done_here = epoch + 1 - run.first_epoch
        if done_here % run.config.checkpoint_every == 0 or epoch + 1 == run.last_epoch:
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
            steps = self.params["steps"]
            rate = (batch + 1) * self.run.config.batch_size / (now - self._started)
            print(f"\repoch {self._epoch + 1}/{self.run.last_epoch}  step {batch + 1}/{steps}  {rate:,.0f} img/s", end="", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        run = self.run
        record = run.history[-1]
        times = [h["seconds"] for h in run.history[-(epoch + 1 - run.first_epoch) :]]
        eta = sum(times) / len(times) * (run.last_epoch - epoch - 1)
        width = len(str(run.last_epoch))
        end = "\r\x1b[K" if self.live else ""  # clear the live line
        self.log(
            f"{end}epoch {epoch + 1:>{width}}/{run.last_epoch}  d_loss {record['d_loss']:.4f}  "
            f"g_loss {record['g_loss']:.4f}  {record['images_per_s']:,.0f} img/s  "
            f"{record['seconds']:.1f}s  eta {format_seconds(eta)}{_quality(run, epoch)}"
        )


def _quality(run, epoch):
    if not run.evaluations or run.evaluations[-1]["epoch"] != epoch + 1:
        return ""
    e = run.evaluations[-1]
    return f"  fid {e['fid']:.1f}  precision {e['precision']:.2f}  recall {e['recall']:.2f}  classes {e['classes_over_5pct']}"


def format_seconds(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
