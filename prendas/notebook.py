"""What the notebook shows: the environment check, live training feedback, image files.

Only gan_prendas.ipynb imports this module; it needs IPython (which Jupyter brings).
"""

import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from prendas import format_seconds
from prendas.artifacts import figure_png
from prendas.devices import gpu_names
from prendas.run import steps_done, time_left

# TensorFlow >= 2.18 in images built on cuDNN 8 (the official -gpu images) loads no GPU library.
GPU_HELP = (
    "An NVIDIA GPU is present but TensorFlow does not see it, so training runs on the CPU. This is the "
    "known failure of TensorFlow GPU images that lack cuDNN 9 (tensorflow issues 62412 and 81344): "
    "use this project's Dockerfile (pip CUDA wheels registered with ldconfig), check "
    "`docker compose` reserves the GPU and that the NVIDIA Container Toolkit is installed, and look for "
    "'Cannot dlopen some GPU libraries' in the server log."
)


def environment_report():
    """Versions, the backend and the GPUs it sees; a warning when a GPU is present but unused."""
    lines = [f"Keras {keras.__version__}, backend {keras.backend.backend()}"]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        lines.insert(0, f"TensorFlow {tf.__version__}")
    gpus = gpu_names()
    nvidia_present = Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None
    if gpus:
        lines.append(f"GPU: {', '.join(gpus)}")
    elif nvidia_present:
        lines.append("WARNING: " + GPU_HELP)
    else:
        lines.append(f"No GPU: training runs on the CPU ({os.cpu_count()} cores), slower but fine for small runs.")
    return "\n".join(lines)


def prepare_tensorboard():
    """Before %tensorboard: point it at the tensorboard program beside this kernel's Python (a virtual environment
    need not be on PATH); the arguments it needs here: in Docker, listening beyond the container (port 6006)."""
    import sys

    beside = Path(sys.executable).with_name("tensorboard")
    if beside.is_file():
        os.environ.setdefault("TENSORBOARD_BINARY", str(beside))
    return "--bind_all" if Path("/.dockerenv").exists() else ""


def show_images(paths, width=None):
    """Show image files (PNG or GIF, animated) side by side, embedded in the notebook."""
    import base64

    from IPython.display import HTML, display

    tags = []
    for path in paths:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        kind = "gif" if str(path).endswith(".gif") else "png"
        size = f' width="{width}"' if width else ""
        tags.append(f'<img src="data:image/{kind};base64,{data}"{size} title="{path}" style="margin:4px">')
    # JupyterLab styles a bare <img> as a block; a flex box lays them side by side, wrapping.
    display(HTML(f'<div style="display:flex;flex-wrap:wrap;align-items:flex-start">{"".join(tags)}</div>'))


class NotebookMonitor(keras.callbacks.Callback):
    """Live training feedback in a notebook: a progress bar, the two loss curves and the sample grid.

    Pass it to train() or resume(); they hand it the run (set_run) before the first epoch.
    """

    def __init__(self, every_seconds=1.0):
        super().__init__()
        self.every_seconds = every_seconds
        self.run = None

    def set_run(self, run):
        self.run = run

    def on_train_begin(self, logs=None):
        from IPython.display import HTML, display

        self._started = time.perf_counter()
        self._shown = 0.0
        self._bar = display(HTML(self._bar_html(0.0)), display_id=True)
        self._plots = display(HTML("<i>The loss curves and the samples appear after the first epoch.</i>"), display_id=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self._shown >= self.every_seconds:
            self._shown = now
            steps = self.params["steps"]
            done = steps_done(batch, steps)
            left = time_left(self.run, self._epoch, done, steps, now - self._epoch_started)
            self._update_bar(self._epoch - self.run.first_epoch + done / steps, left)

    def on_epoch_end(self, epoch, logs=None):
        from IPython.display import Image

        history = self.run.history[self.run.first_epoch :]
        per_epoch = sum(h["seconds"] for h in history) / len(history)
        self._update_bar(epoch + 1 - self.run.first_epoch, (0.0, per_epoch * (self.run.last_epoch - epoch - 1)))
        self._plots.update(Image(data=figure_png(self.figure())))

    def _update_bar(self, epochs_done, left=None):
        from IPython.display import HTML

        self._bar.update(HTML(self._bar_html(epochs_done, left)))

    def _bar_html(self, epochs_done, left=None):
        """The bar, the epoch, the time so far and (once known) the time left in the epoch and in the run."""
        total = self.run.config.epochs
        elapsed = time.perf_counter() - self._started
        between = 0 < epochs_done == int(epochs_done)  # at an epoch's end: the one just done
        epoch = int(epochs_done) + self.run.first_epoch + (0 if between else 1)
        rest = ""
        if left is not None and epochs_done < total:
            rest = (("" if between else f" &middot; this epoch: {format_seconds(left[0])} left")
                    + f" &middot; the run: about {format_seconds(left[1])} left")
        budget = self.run.config.minutes * 60
        if budget:  # (--minutes: the bar measures the time, the epochs are as many as fit)
            ended = bool(self.run.planned_epochs) and self.run.last_epoch == epoch and between  # (stopped by the time)
            return (
                f'<progress value="{budget if ended else min(elapsed, budget):.1f}" max="{budget:.1f}" '
                f'style="width:60%"></progress> epoch {epoch}{" done" if between else ""} &middot; '
                f"{format_seconds(elapsed)} elapsed of at most about {format_seconds(budget)}"
                + (f" (the run stops here: {epoch - self.run.first_epoch} epoch{'s' * (epoch - self.run.first_epoch != 1)} "
                   "fit)" if ended else "")
            )
        return (
            f'<progress value="{epochs_done:.3f}" max="{total}" style="width:60%"></progress> '
            f"epoch {epoch}/{self.run.last_epoch}{' done' if between else ''} &middot; "
            f"{format_seconds(elapsed)} elapsed{rest}"
        )

    def figure(self):
        """Loss curves of every epoch so far (earlier runs included) beside the latest sample grid."""
        history = self.run.history
        fig = Figure(figsize=(11, 4.2))
        losses, samples = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
        epochs = [h["epoch"] for h in history]
        losses.plot(epochs, [h["d_loss"] for h in history], "o-", label="discriminator")
        losses.plot(epochs, [h["g_loss"] for h in history], "o-", label="generator")
        losses.xaxis.set_major_locator(MaxNLocator(integer=True))
        losses.set_xlabel("epoch")
        losses.set_ylabel("loss (mean over the epoch)")
        losses.legend()
        losses.grid(alpha=0.3)
        samples.imshow(self.run.frames[-1], cmap="gray", vmin=0, vmax=255)
        samples.set_title(f"fixed noise after epoch {history[-1]['epoch']}")
        samples.axis("off")
        fig.tight_layout()
        return fig


# ---- the garment explorer ---------------------------------------------------------------------

SHIPPED_GENERATOR = "generator_2026-12-06-1701_24+16+24ep_60000imgs.keras"  # the repository's best (docs/runs.md)


def shipped_generator_path(name=SHIPPED_GENERATOR):
    """The shipped generator: in ./models, or in the models/ of the repository this package runs from; None if neither."""
    for folder in (Path("models"), Path(__file__).resolve().parent.parent / "models"):
        if (folder / name).is_file():
            return folder / name
    return None


def _png(pixels, scale):
    from prendas.artifacts import png_bytes

    return png_bytes(np.kron(pixels, np.ones((scale, scale), np.uint8)))


class GarmentExplorer:
    """An interactive panel on a generator (ipywidgets): choose the garment (a conditional generator), draw new
    ones (a seed, or the button), and walk with the slider from the first garment drawn to another of its class
    (the second noise vector's).

    Show it by leaving it as a cell's last expression; `.panel` is the widget.
    """

    COUNT = 16  # garments drawn at once, in two rows

    def __init__(self, generator, title="", seed=0):
        import ipywidgets as w

        from prendas.data import CLASS_NAMES
        from prendas.models import generator_signature

        self.generator = generator
        self.latent_dim, self.conditional = generator_signature(generator)
        self.garment = w.Dropdown(options=[("every class", -1)] + [(n, i) for i, n in enumerate(CLASS_NAMES)],
                                  value=-1, description="garment", layout=w.Layout(width="230px"))
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed", layout=w.Layout(width="170px"))
        self.new = w.Button(description="New garments", icon="refresh", button_style="primary")
        self.walk = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="walk", readout_format=".2f",
                                  continuous_update=True, layout=w.Layout(width="300px"))
        self.grid, self.start, self.end, self.between = (w.Image(format="png") for _ in range(4))
        self.new.on_click(lambda _: setattr(self.seed, "value", self.seed.value + 1))
        for control in (self.garment, self.seed):
            control.observe(lambda _: self.draw(), names="value")
        self.walk.observe(lambda _: self._draw_walk(), names="value")
        controls = [self.garment] if self.conditional else []
        walk_help = w.HTML("<small>from the first garment drawn (left) to another of its kind (right)</small>")
        self.panel = w.VBox([
            w.HTML(f"<b>{title}</b>" if title else ""),
            w.HBox([*controls, self.seed, self.new]),
            self.grid,
            w.HBox([self.start, w.VBox([self.walk, walk_help, self.between], layout=w.Layout(align_items="center")),
                    self.end], layout=w.Layout(align_items="center")),
        ])
        self.draw()

    def _repr_mimebundle_(self, **kwargs):
        return self.panel._repr_mimebundle_(**kwargs)

    def labels(self, n):
        """The classes of n garments: the one chosen, or every class in turn; None for an unconditional generator."""
        from prendas.sampling import balanced_labels

        if not self.conditional:
            return None
        return balanced_labels(n) if self.garment.value < 0 else np.full(n, self.garment.value, np.int32)

    def draw(self):
        """New garments for the seed and class chosen, and the walk between the first two."""
        from prendas.artifacts import image_grid
        from prendas.sampling import generate_images, latent_batch

        self.z = latent_batch(self.COUNT, self.latent_dim, self.seed.value)
        self.images = generate_images(self.generator, self.z, self.labels(self.COUNT))
        self.grid.value = _png(image_grid(self.images, cols=8, scale=1), 3)
        # The walk: from the first garment to the one the second noise draws in the first garment's class, each
        # picture drawn as the slider's are (one garment at a time), so that its ends are the slider's ends exactly.
        labels = self.labels(self.COUNT)
        self.walk_label = None if labels is None else labels[:1]
        self.ends = np.stack([self._walk_at(0.0), self._walk_at(1.0)])
        self.start.value, self.end.value = _png(self.ends[0], 3), _png(self.ends[1], 3)
        self._draw_walk()

    def _walk_at(self, t):
        """The garment at `t` of the walk (0: the first garment, 1: the second noise's), on the slider's steps."""
        from prendas.sampling import generate_images, interpolate_latents

        steps = round(1 / self.walk.step) + 1
        z = interpolate_latents(self.z[0], self.z[1], steps)[round(t / self.walk.step)]
        return generate_images(self.generator, z[None], self.walk_label)[0]

    def _draw_walk(self):
        self.walked = self._walk_at(self.walk.value)
        self.between.value = _png(self.walked, 6)
