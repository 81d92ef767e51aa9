"""Training, from top to bottom: data, models, fit with the run's callbacks, files on disk.

`train(config)` starts a run; `resume(checkpoint, epochs)` continues one exactly where its last
checkpoint left it (weights, optimizer moments, noise and dropout streams, epoch count).
"""

import contextlib
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np

from prendas import PrendasError, __version__, artifacts
from prendas.bench import machine_name
from prendas.callbacks import EpochOrder, ProgressLogger, RunRecorder
from prendas.config import TrainConfig
from prendas.data import load_fashion_mnist, select_images, step_indices, steps_per_epoch
from prendas.gan import GAN, balanced_labels, generate_images, latent_batch, multi_worker
from prendas.models import build_discriminator, build_generator



def train(config, callbacks=(), log=print):
    """Train a new GAN with `config`; returns the finished Run.

    Extra Keras callbacks may watch it; one with a set_run(run) method is handed the Run first.
    """
    _check_out(config.out)
    _check_machines(config)
    images, data = _training_images(config)
    gan = build_gan(config)
    config, scratch = _where_this_machine_writes(gan, config)
    tag = artifacts.unique_tag(config.out, artifacts.run_tag([config.epochs], config.images))
    run = Run(gan, config, data, tag)
    return _fit(run, images, callbacks, log, scratch)


def resume(
    checkpoint,
    epochs,
    out=None,
    checkpoint_every=None,
    deterministic=None,
    eval_every=None,
    steps_per_execution=None,
    xla=None,
    devices=None,
    expect=None,
    callbacks=(),
    log=print,
):
    """Continue the run saved in `checkpoint` for `epochs` more epochs; its tag reads 'E0+E'.

    The new files go under `out`, by default the folder that holds the checkpoint's `checkpoints/`.
    How the steps run (steps_per_execution, xla, devices) may change; everything else (batch size, images,
    learning rates, seed, precision) is the checkpoint's; `expect`, a
    dict of such settings, makes any difference from the checkpoint an error.
    """
    TrainConfig(epochs=epochs, checkpoint_every=checkpoint_every or 1)  # range checks before the heavy load
    checkpoint = Path(checkpoint)
    meta, frames, saved = artifacts.load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(meta["config"])
    for name, value in (expect or {}).items():
        if value != getattr(config, name):
            raise PrendasError(
                f"--{name.replace('_', '-')} cannot change when resuming: the checkpoint trained with {getattr(config, name)}"
            )
    if out is None:
        out = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else Path(".")
    changes = {"epochs": epochs, "out": str(out), "checkpoint_every": checkpoint_every,
               "deterministic": deterministic, "eval_every": eval_every,
               "steps_per_execution": steps_per_execution, "xla": xla, "devices": devices}
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    _check_out(config.out)
    _check_machines(config)
    images, data = _training_images(config)
    gan = build_gan(config)
    artifacts.restore_variables(gan.state_variables(), saved, checkpoint)
    config, scratch = _where_this_machine_writes(gan, config)
    segments = meta["segments"] + [epochs]
    tag = artifacts.unique_tag(config.out, artifacts.run_tag(segments, config.images))
    run = Run(gan, config, data, tag, meta["segments"], meta["history"], list(frames), str(checkpoint),
              meta.get("evaluations", ()))
    run.training_seconds_before = meta["training_seconds"]
    return _fit(run, images, callbacks, log, scratch)


def _check_machines(config):
    """TF_CONFIG (a run over several machines) wants --devices all and TensorFlow: say so before loading anything."""
    if not _cluster():
        return
    if config.devices == "1":
        raise PrendasError("TF_CONFIG is set (a run over several machines): add --devices all, or unset TF_CONFIG")
    if keras.backend.backend() != "tensorflow":
        raise PrendasError("TF_CONFIG is set (a run over several machines), which only the TensorFlow backend "
                           "follows: unset it, or train with KERAS_BACKEND=tensorflow")


def _where_this_machine_writes(gan, config):
    """(config, None) where the run's files are written: one machine, or the chief of several.

    The other machines of a multi-machine run do all the same work (their sample grids and checkpoints
    too, so every machine takes the same steps) into a scratch folder that _fit removes at the end:
    only the chief (worker 0, or TF_CONFIG's "chief" task) writes to --out. Returns (config writing there, the scratch folder).
    """
    if not multi_worker(gan) or gan.distribute_strategy.extended.should_checkpoint:
        return config, None
    scratch = tempfile.mkdtemp(prefix="prendas-worker-")
    return config.replace(out=scratch), scratch


def build_gan(config):
    """Seed everything, build both networks (and the moving average) and their Adam optimizers."""
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise PrendasError(
            f"training needs the TensorFlow or JAX backend (KERAS_BACKEND is {backend}); "
            "a saved generator can be sampled on any backend"
        )
    if backend == "jax" and config.deterministic and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        warnings.warn("--deterministic sets TensorFlow's kernels; on JAX, start Python with "
                      "XLA_FLAGS=--xla_gpu_deterministic_ops=true for deterministic GPU kernels", stacklevel=2)
    keras.distribution.set_distribution(_data_parallel(config, backend) if backend == "jax" else None)
    strategy = _mirrored_strategy(config) if backend == "tensorflow" else None
    if backend == "tensorflow":
        import tensorflow as tf

        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        # Grappler's remapper fails on this graph (LeakyReLU's gradient needs the BiasAdd it would fold
        # into a fused convolution) and logs "remapper failed" as an error at every trace; a failed pass
        # leaves the graph unchanged. Skipping it avoids the alarming line (measured: same speed).
        tf.config.optimizer.set_experimental_options({"remapping": False})
    keras.utils.set_random_seed(config.seed)

    def generator():
        return build_generator(config.latent_dim, config.arch, config.conditional)

    with strategy.scope() if strategy else contextlib.nullcontext():  # (--devices all: variables on every device)
        # The layers compute in the chosen precision (their weights stay float32); the policy is global
        # in Keras, so it is set only while the networks are built.
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(config.precision)
        try:
            # Dropout is the tutorial's; a WGAN-GP critic and a hinge discriminator train without it, as in their papers.
            discriminator = build_discriminator(
                config.arch, dropout=0.3 if config.loss == "bce" else 0.0, spectral_norm=config.spectral_norm,
                conditional=config.conditional, classifier=bool(config.class_loss),
            )
            gan = GAN(
                generator(), discriminator, loss=config.loss, d_steps=config.resolved("d_steps"), ema=config.ema,
                ema_generator=generator() if config.ema else None, class_weight=config.class_loss,
            )
        finally:
            keras.config.set_dtype_policy(previous_policy)
        if strategy is not None:  # (only made for two devices or more)
            # Batch statistics over the whole batch, as on one device, not over each replica's share.
            set_synchronized_batch_norm(gan.generator, True)
        betas = {"beta_1": config.resolved("beta_1"), "beta_2": config.resolved("beta_2")}
        optimizers = {
            "d_optimizer": keras.optimizers.Adam(config.d_lr, **betas, name="d_adam"),
            "g_optimizer": keras.optimizers.Adam(config.g_lr, **betas, name="g_adam"),
        }
        if config.precision == "mixed_float16":  # float16 gradients underflow without a loss scale
            optimizers = {k: keras.optimizers.LossScaleOptimizer(o, name=o.name + "_scaled") for k, o in optimizers.items()}
        gan.compile(**optimizers, steps_per_execution=config.steps_per_execution, jit_compile=config.xla)
        gan.build_optimizers()
    return gan


def _data_parallel(config, backend):
    """JAX: None for one device; for --devices all, Keras's DataParallel over every device JAX sees.

    The variables are replicated, each step's batch is split along its first axis, and XLA inserts the
    reductions (losses, gradients, batch statistics), so the result is that of one device.
    """
    if config.devices == "1":
        return None
    import jax

    devices = jax.devices()
    _check_split(config.batch_size, len(devices))
    return keras.distribution.DataParallel(devices=devices)


def _check_split(batch_size, devices):
    if batch_size % devices:
        raise PrendasError(f"--batch-size {batch_size} does not split evenly over {devices} devices")


def _cluster():
    """The machines of a multi-machine run, from TF_CONFIG (TensorFlow's own variable); {} when unset.

    Checked here, so that a mistake in it is a one-line error before anything loads: a cluster of
    "chief" and "worker" addresses, and this machine's task, one of them.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    example = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    try:
        tf_config = json.loads(text)
    except ValueError:
        tf_config = None
    if not isinstance(tf_config, dict):
        raise PrendasError(f"TF_CONFIG is not a JSON object like {example}")
    cluster, task = tf_config.get("cluster"), tf_config.get("task")
    if (not isinstance(cluster, dict) or not cluster or set(cluster) - {"chief", "worker"}
            or not all(isinstance(hosts, list) and hosts for hosts in cluster.values())):
        raise PrendasError(f'TF_CONFIG\'s "cluster" must list "worker" (and at most one "chief") addresses, like {example}')
    if (not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int)
            or not 0 <= task["index"] < len(cluster[task["type"]])):
        raise PrendasError(f'TF_CONFIG\'s "task" must name this machine, one of its cluster\'s, like {example}')
    return cluster


def _machines():
    """How many machines train together (TF_CONFIG's chief and workers; 1 without it)."""
    return sum(len(_cluster().get(kind, ())) for kind in ("chief", "worker")) or 1


def _mirrored_strategy(config):
    """TensorFlow: None for one device; for --devices all, a MirroredStrategy over every GPU (else every CPU).

    Each replica takes its share of the step's batch (and of its noise), the optimizers sum the
    replicas' gradients of loss / replicas, and the generator's BatchNorm layers take their statistics
    over the whole batch: the result is that of one device. Several machines (TF_CONFIG names them): a
    MultiWorkerMirroredStrategy over every device of every machine, the same way (see the README).
    """
    if config.devices == "1":
        return None
    cluster = _cluster()
    import tensorflow as tf

    if not cluster:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1:
            return None  # one device: nothing to split
    refused = {
        # Keras 3's multi-step loop fails under MirroredStrategy (keras-team/keras#19246).
        "--steps-per-execution above 1": config.steps_per_execution > 1,
        # XLA on GPUs makes MirroredStrategy reduce with collective ops, which fail here (see below).
        "--xla": config.xla,
        # LossScaleOptimizer decides "finite" from the first replica's gradients, before they are summed.
        "--precision mixed_float16": config.precision == "mixed_float16",
    }
    for option, given in refused.items():
        if given:
            raise PrendasError(f"--devices all on TensorFlow does not take {option} (not supported under "
                               "MirroredStrategy); leave it out, or train with KERAS_BACKEND=jax")
    if cluster:
        # Across machines the reductions are collective ops (the only kind MultiWorkerMirroredStrategy has),
        # configured before TensorFlow starts its devices: nothing above may list them first.
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, RuntimeError) as e:
            raise PrendasError(f"cannot join the machines of TF_CONFIG: {e}") from None
        _check_split(config.batch_size, strategy.num_replicas_in_sync)
        return strategy
    _check_split(config.batch_size, len(devices))
    # Reductions through one device, not collective ops: the synchronized BatchNorm's reductions (and
    # their gradients) and the optimizers' are not ordered alike on every replica, and collective ops
    # then fail with "Shape mismatch in the collective instance" (seen on two CPU devices).
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def _batch_norms(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def set_synchronized_batch_norm(model, on):
    """Make the BatchNormalization layers of `model` compute their statistics across replicas (TensorFlow)."""
    for layer in _batch_norms(model):
        layer.synchronized = on


@contextlib.contextmanager
def _unsynchronized(model):
    """While `model` is saved, its BatchNorm layers say synchronized=False: a file that other backends load.

    (Synchronization only decides where training takes its statistics; the layer is otherwise the same.)
    """
    layers = [layer for layer in _batch_norms(model) if layer.synchronized]
    for layer in layers:
        layer.synchronized = False
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = True


def replicas(gan):
    """How many devices share each step (1 unless --devices all is in force)."""
    if keras.backend.backend() == "tensorflow":
        return gan.distribute_strategy.num_replicas_in_sync
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def _check_out(out):
    """Fail now, not after the first epoch, if the output folder cannot be written."""
    folder = Path(out)
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise PrendasError(f"cannot write under {out}: {folder} is not a writable folder (--out)")


def _training_images(config):
    """The run's images, with their labels when the GAN is conditional."""
    images, labels, record = select_images(load_fashion_mnist(), config.images, config.seed)
    return (images, labels if config.conditional else None), record


def _fit(run, images, callbacks, log, scratch=None):
    try:
        return _fit_here(run, images, callbacks, log, scratch)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _fit_here(run, images, callbacks, log, scratch):
    config = run.config
    images, labels = images
    steps = steps_per_epoch(len(images), config.batch_size)
    note = " (includes test images)" if run.data["includes_test_images"] else ""
    devices = replicas(run.gan)
    log(
        f"run {run.tag} ({config.recipe()}): {len(images):,} images{note} from {run.data['source']}, "
        f"epochs {run.first_epoch + 1}-{run.last_epoch}, {steps} step{'s' if steps > 1 else ''} of "
        f"{config.batch_size} images each"
        + (f" over {devices} devices" if devices > 1 else "") + ", "
        + ("writing nothing: the chief (worker 0, or the chief task) writes the files" if scratch else f"writing to {Path(config.out).resolve()}")
    )
    for callback in callbacks:
        if hasattr(callback, "set_run"):  # callbacks that want the run's history and frames (NotebookMonitor)
            callback.set_run(run)
    run.gan.attach_data(images, labels, config.batch_size)  # into device memory, once
    run.gan.fit(
        step_indices(steps, devices),  # each step takes its batch from the attached images by its number
        batch_size=devices,  # (for the backends that get an array of step numbers: one per device)
        epochs=run.last_epoch,
        initial_epoch=run.first_epoch,
        shuffle=False,  # EpochOrder shuffles, reproducibly from the seed
        callbacks=[EpochOrder(run.gan, config.seed), RunRecorder(run), ProgressLogger(run, log), *callbacks],
        verbose=0,
    )
    if scratch:
        log(f"done: {run.epochs_done} epochs; the chief wrote the files")
        return run
    log(
        f"done: {run.tag} ({run.epochs_done} epochs); models in {run.paths['generator'].parent}, images in "
        f"{run.paths['grid'].parent}, checkpoint {run.paths['checkpoint']}"
    )
    return run


class Run:
    """One training run: its settings, tag, history and files. The callbacks fill and save it."""

    def __init__(
        self, gan, config, data, tag, segments_before=(), history=(), frames=(), resumed_from=None, evaluations=()
    ):
        self.gan = gan
        self.config = config
        self.data = data
        self.tag = tag
        self.paths = artifacts.run_paths(config.out, tag)
        self.segments_before = list(segments_before)
        self.history = list(history)  # one record per epoch, previous segments included
        self.frames = list(frames)  # the fixed batch's grid after each epoch, for the animation
        self.resumed_from = resumed_from
        self.first_epoch = len(self.history)
        self.last_epoch = self.first_epoch + config.epochs
        self.training_seconds_before = 0.0
        self.started = datetime.datetime.now().isoformat(timespec="seconds")
        self.machine_name = machine_name()  # read once (/proc/cpuinfo, the GPU list), not at every checkpoint
        # A conditional GAN's grid has a column per class (8 x 10), the others are 8 x 8.
        self.grid_cols = 10 if gan.conditional else 8
        self.fixed_z = latent_batch(8 * self.grid_cols, gan.latent_dim, [config.seed, 3])
        self.fixed_labels = balanced_labels(len(self.fixed_z)) if gan.conditional else None
        if config.ema:
            self.paths["generator_raw"] = self.paths["generator"].with_name(f"generator_raw_{tag}.keras")
        self.evaluations = list(evaluations)  # quality measured during training, every config.eval_every epochs
        self._reference = None
        if config.eval_every or self.evaluations:
            self.paths["quality_curve"] = self.paths["grid"].with_name(f"quality_{tag}.png")

    @property
    def epochs_done(self):
        return len(self.history)

    def segments_done(self):
        return self.segments_before + [self.epochs_done - self.first_epoch]

    def sample_grid(self):
        return artifacts.image_grid(generate_images(self.gan.sampler, self.fixed_z, self.fixed_labels), cols=self.grid_cols, scale=2)

    def evaluate_now(self):
        """FID, precision, recall and class balance of eval_samples garments, against the test images."""
        from prendas.evaluate import Reference

        if self._reference is None:
            self._reference = Reference()
        z = latent_batch(self.config.eval_samples, self.gan.latent_dim, [self.config.seed, 4, self.epochs_done])
        labels = balanced_labels(len(z)) if self.gan.conditional else None
        scores = self._reference.score(generate_images(self.gan.sampler, z, labels), full=False)
        keep = ("fid", "precision", "recall", "classes_over_5pct", "kl_from_uniform", "classifier_score")
        self.evaluations.append({"epoch": self.epochs_done, "n": len(z), **{k: scores[k] for k in keep}})

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
            "training_seconds": round(self.training_seconds_before + sum(h["seconds"] for h in self.history[self.first_epoch :]), 3),
            "history": self.history,
            "evaluations": self.evaluations,
            "files": {name: str(path) for name, path in self.paths.items()},
            "versions": _versions(),
            "machine": {"name": self.machine_name, "platform": platform.platform(), "processor": platform.machine(),
                        "backend": keras.backend.backend(),
                        "devices": replicas(self.gan), "machines": _machines()},
        }

    def save_checkpoint(self):
        record = self.record("running")  # run.json says "complete" only once save_final has written every file
        meta = {"format": artifacts.CHECKPOINT_FORMAT, "version": artifacts.CHECKPOINT_VERSION, **record,
                "status": "running" if self.epochs_done < self.last_epoch else "complete"}
        artifacts.save_checkpoint(self.paths["checkpoint"], self.gan.state_variables(), meta, self.frames)
        artifacts.write_json(self.paths["run_json"], record)

    def save_final(self):
        """Models, grid, five single images and the animation; run.json last, marking the run complete."""
        paths = self.paths
        with _unsynchronized(self.gan.sampler):
            artifacts.save_model(self.gan.sampler, paths["generator"])  # the moving average, when there is one
        if self.config.ema:
            with _unsynchronized(self.gan.generator):
                artifacts.save_model(self.gan.generator, paths["generator_raw"])  # the weights as trained, to compare
        artifacts.save_model(self.gan.discriminator, paths["discriminator"])
        artifacts.save_png(self.frames[-1], paths["grid"])
        labels = None if self.fixed_labels is None else self.fixed_labels[:5]
        samples = generate_images(self.gan.sampler, self.fixed_z[:5], labels)
        for i, image in enumerate(samples):
            artifacts.save_png(np.kron(image, np.ones((4, 4), np.uint8)), paths[f"image_{i}"])
        artifacts.save_gif(self.frames, paths["progress_gif"])
        if self.evaluations:
            artifacts.save_figure(quality_figure(self.evaluations), paths["quality_curve"])
        artifacts.write_json(paths["run_json"], self.record("complete"))


def quality_figure(evaluations):
    """FID (left) and precision/recall (right) against the epoch."""
    from matplotlib.figure import Figure

    epochs = [e["epoch"] for e in evaluations]
    fig = Figure(figsize=(9, 3.4))
    left, right = fig.subplots(1, 2)
    left.plot(epochs, [e["fid"] for e in evaluations], "o-")
    left.set_ylabel(f"FID ({evaluations[-1]['n']:,} samples, lower is better)")
    for key in ("precision", "recall"):
        right.plot(epochs, [e[key] for e in evaluations], "o-", label=key)
    right.set_ylim(0, 1)
    right.legend()
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _versions():
    versions = {"prendas": __version__, "python": sys.version.split()[0], "keras": keras.__version__, "numpy": np.__version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    return versions
