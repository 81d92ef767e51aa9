"""Training, from top to bottom: data, models, fit with the run's callbacks, files on disk.

`train(config)` starts a run; `resume(checkpoint, epochs)` continues one exactly where its last
checkpoint left it (weights, optimizer moments, noise and dropout streams, epoch count).
"""

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import keras

from prendas import Diverged, PrendasError, artifacts, command, devices
from prendas.config import RESUME_OPTIONS, TUTORIAL_DROPOUT, TrainConfig, check_installed, tensorboard_installed
from prendas.data import load_fashion_mnist, select_images, steps_per_epoch
from prendas.gan import GAN, step_backend
from prendas.models import build_discriminator, generator_of
from prendas.precision import explain_precision, native_bf16, resolve_precision
from prendas.run import ProgressLogger, Run, RunRecorder


def train(config, callbacks=(), log=print):
    """Train a new GAN with `config`; returns the finished Run.

    Extra Keras callbacks may watch it; one with a set_run(run) method is handed the Run first.
    """
    with keeping_float64(config.precision):
        config, images, data, gan = _prepare(config)
        config, scratch = _where_this_machine_writes(gan, config)
        artifacts.remove_leftovers(config.out, log)
        tag = artifacts.claim_tag(config.out, artifacts.run_tag([config.epochs], config.images))
        run = Run(gan, _log_folder(config, tag), data, tag)
        return _fit(run, images, callbacks, log, scratch)


def resume(checkpoint, epochs, expect=None, callbacks=(), log=print, **changes):
    """Continue the run saved in `checkpoint` for `epochs` more epochs; its tag reads 'E0+E'.

    `changes`: the settings a resume may change (config.RESUME_OPTIONS); `out` defaults to the folder
    that holds the checkpoint's checkpoints/. The rest is the checkpoint's; `expect`, a dict of such
    settings, makes any difference from the checkpoint an error.
    """
    unknown = sorted(set(changes) - set(RESUME_OPTIONS))
    if unknown:
        raise TypeError(f"resume() cannot change {', '.join(unknown)}; it may change {', '.join(RESUME_OPTIONS)}")
    TrainConfig(epochs=epochs, checkpoint_every=changes.get("checkpoint_every") or 1)  # range checks before the heavy load
    checkpoint = newest_checkpoint(checkpoint, log)
    meta, frames, saved = artifacts.load_checkpoint(checkpoint)
    if artifacts.non_finite_groups({g: saved[g] for g in ("generator", "discriminator", "ema_generator") if g in saved}):
        raise Diverged(f"{checkpoint} holds non-finite weights (NaN or infinity) and cannot be resumed: resume an "
                       f"earlier checkpoint of the run")
    config = TrainConfig.from_dict(meta["config"])
    if changes.get("precision") not in (None, config.precision) and "mixed_float16" in (changes["precision"],
                                                                                       config.precision):
        raise PrendasError(f"--precision cannot change to or from mixed_float16 when resuming (the checkpoint trained "
                           f"in {config.precision}): float16's optimizers keep a loss scale the others do not")
    for name, value in (expect or {}).items():
        if value != getattr(config, name):
            raise PrendasError(
                f"--{name.replace('_', '-')} cannot change when resuming: the checkpoint trained with {getattr(config, name)}"
            )
    if changes.get("out") is None:
        changes["out"] = str(checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else Path("."))
    logged = meta["config"].get("tensorboard")  # where the run logged for TensorBoard, if it did
    tensorboard = changes.pop("tensorboard", None)
    if tensorboard is None and logged is not None:  # not asked: it goes on logging there (_log_folder), where it can
        tensorboard = "" if tensorboard_installed() else None
        if tensorboard is None:
            log("the run logged for TensorBoard, but the tensorboard package is not installed here: this session "
                "does not log")
    minutes = changes.pop("minutes", None) or 0.0  # (a time budget is the session's it was given to, never carried on)
    config = config.replace(epochs=epochs, tensorboard=tensorboard, minutes=minutes,
                            **{k: v for k, v in changes.items() if v is not None})
    with keeping_float64(config.precision):
        return _resume(config, meta, frames, saved, checkpoint, epochs, logged, callbacks, log)


def _resume(config, meta, frames, saved, checkpoint, epochs, logged, callbacks, log):
    config, images, data, gan = _prepare(config)
    config, gan = _networks_before_width(config, gan, saved, checkpoint, log)
    artifacts.restore_variables(gan.state_variables(), saved, checkpoint)
    config, scratch = _where_this_machine_writes(gan, config)
    segments = meta["segments"] + [epochs]
    artifacts.remove_leftovers(config.out, log)
    tag = artifacts.claim_tag(config.out, artifacts.run_tag(segments, config.images))
    config = _log_folder(config, tag, logged, meta["config"]["out"])
    run = Run(gan, config, data, tag, meta["segments"], meta["history"], list(frames), str(checkpoint),
              meta.get("evaluations", ()), meta.get("best"))
    run.training_seconds_before = meta["training_seconds"]
    return _fit(run, images, callbacks, log, scratch)


def _prepare(config):
    """What a new and a resumed run do first: the checks that need nothing loaded (a folder that cannot be written,
    a missing package, TF_CONFIG), then the images and the GAN. (config, images, data record, gan)."""
    artifacts.check_writable(config.out, "--out")  # now, not after the first epoch
    check_installed(config)
    devices.check_machines(config)
    images, data = _training_images(config)
    return config, images, data, build_gan(config)


def _networks_before_width(config, gan, saved, checkpoint, log):
    """(config, gan) that hold a checkpoint's weights. Before 2026-12-06 --width shaped only --arch resnet: a dcgan or
    deep run given another width trained the tutorial's width (32), and resumes at it, saying so."""
    if config.arch == "resnet" or config.width == 32 or not artifacts.mismatched_groups(gan.state_variables(), saved):
        return config, gan
    before = config.replace(width=32)
    old = build_gan(before)
    if artifacts.mismatched_groups(old.state_variables(), saved):
        return config, gan  # (neither: restore_variables says so)
    log(f"{checkpoint.name} trained the tutorial's width (--width {config.width} shaped only --arch resnet before "
        f"2026-12-06): it resumes at --width 32")
    return before, old


def newest_checkpoint(path, log=print):
    """`path` if it is a file; for a run's folder (or its checkpoints/), the newest checkpoint_TAG.npz there."""
    path = Path(path)
    if not path.is_dir():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = [p for p in folder.glob("checkpoint_*.npz") if not p.name.startswith("checkpoint_best_")]
    if not found:
        raise PrendasError(f"no checkpoint in {folder} (runs write OUT/checkpoints/checkpoint_TAG.npz)")
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log(f"resuming from {newest}, the newest of {len(found)} checkpoint{'s' if len(found) > 1 else ''} in {folder}")
    return newest


def _where_this_machine_writes(gan, config):
    """(config, None) where the run's files are written: one machine, or the chief of several.

    The other machines of a multi-machine run do the same work (grids and checkpoints too, so all take
    the same steps) into a scratch folder that _fit removes: (config writing there, the scratch folder).
    """
    if devices.writes_files(gan):
        return config, None
    scratch = tempfile.mkdtemp(prefix="prendas-worker-")
    return config.replace(out=scratch, tensorboard=None), scratch


def _log_folder(config, tag, before=None, out_before=None):
    """--tensorboard without a folder: the folder the resumed run logged to (`before`; where it was inside the run's
    OUT, the same place in this OUT, so that a resume started from elsewhere finds it), else OUT/logs/TAG."""
    if config.tensorboard != "":
        return config
    if before and out_before is not None:
        with contextlib.suppress(ValueError):  # (a folder outside OUT stays where it was)
            before = str(Path(config.out) / Path(before).relative_to(out_before))
    return config.replace(tensorboard=before or str(Path(config.out) / "logs" / tag))


def build_gan(config):
    """Seed everything, build both networks (and the moving average) and their Adam optimizers."""
    step_backend()  # (TensorFlow or JAX, else a one-line error)
    backend = keras.backend.backend()
    if backend == "jax" and config.deterministic and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        warnings.warn("--deterministic sets TensorFlow's kernels; on JAX, start Python with "
                      "XLA_FLAGS=--xla_gpu_deterministic_ops=true for deterministic GPU kernels", stacklevel=2)
    # --precision auto is decided here, by the process that trains (a resumed run again, on its own machine).
    precision = resolve_precision(config.precision)
    if config.precision == "mixed_bfloat16" and not native_bf16():
        warnings.warn("--precision mixed_bfloat16 on a processor without bfloat16 arithmetic (no GPU of compute "
                      "capability 8.0 or more, no AVX512_BF16 or AMX): it is emulated, slower than float32 (measure with "
                      "prendas bench); --precision auto picks for the machine (a resume may change it)", stacklevel=2)
    if backend == "jax" and precision == "float64":
        _check_jax_float64()  # (and the caller keeps Keras's float64: keeping_float64)
    strategy = devices.set_up(config)
    if backend == "tensorflow":
        import tensorflow as tf

        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        # Grappler's remapper fails on this graph (LeakyReLU's gradient needs the BiasAdd it would fold
        # into a fused convolution) and logs "remapper failed" as an error at every trace; a failed pass
        # leaves the graph unchanged. Skipping it avoids the alarming line (measured: same speed).
        tf.config.optimizer.set_experimental_options({"remapping": False})
    keras.utils.set_random_seed(config.seed)

    with strategy.scope() if strategy else contextlib.nullcontext():  # (--devices all: variables on every device)
        # The layers compute in the chosen precision (their weights stay float32); the policy is global
        # in Keras, so it is set only while the networks are built.
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(precision)
        try:
            # Dropout is the tutorial's; a WGAN-GP critic and a hinge discriminator train without it, as in their papers.
            discriminator = build_discriminator(
                config.arch, dropout=TUTORIAL_DROPOUT if config.loss == "bce" else 0.0, spectral_norm=config.spectral_norm,
                conditional=config.conditional, classifier=bool(config.class_loss), width=config.width,
            )
            gan = GAN(
                generator_of(config), discriminator, loss=config.loss, d_steps=config.resolved("d_steps"), ema=config.ema,
                ema_generator=generator_of(config) if config.averaged else None, class_weight=config.class_loss,
                r1=config.r1, r2=config.r2, ema_kimg=config.ema_kimg, gamma_kimg=config.gamma_kimg,
                reg_every=config.reg_every,
                augment=config.augment,
            )
        finally:
            keras.config.set_dtype_policy(previous_policy)
        if strategy is not None:  # (only made for two devices or more)
            # Batch statistics over the whole batch, as on one device, not over each replica's share.
            devices.set_synchronized_batch_norm(gan.generator, True)
        d_lr, d_beta_1, d_beta_2 = config.d_adam()
        optimizers = {
            "d_optimizer": keras.optimizers.Adam(d_lr, beta_1=d_beta_1, beta_2=d_beta_2, name="d_adam"),
            "g_optimizer": keras.optimizers.Adam(config.g_lr, beta_1=config.resolved("beta_1"),
                                                 beta_2=config.resolved("beta_2"), name="g_adam"),
        }
        if precision == "mixed_float16":  # float16 gradients underflow without a loss scale
            optimizers = {k: keras.optimizers.LossScaleOptimizer(o, name=o.name + "_scaled") for k, o in optimizers.items()}
        gan.compile(**optimizers, steps_per_execution=config.steps_per_execution, jit_compile=config.xla)
        gan.build_optimizers()
    return gan


def _check_jax_float64():
    """float64 on JAX needs JAX's 64-bit arrays, which only the start of a process may turn on: turned on by a run,
    they would change every computation after it (a notebook's later runs, a test's)."""
    import jax

    if not jax.config.jax_enable_x64:
        raise PrendasError("--precision float64 on JAX needs its 64-bit arrays on from the start of the process: run "
                           "Python with JAX_ENABLE_X64=1 (or train in float32)")


@contextlib.contextmanager
def keeping_float64(precision):
    """While a float64 run on JAX builds and trains: Keras's type promotion keeps float64, which on JAX it turns into
    float32 (as JAX does without 64-bit arrays: every op on a Python number would round to float32); put back as it
    was afterwards. Keras has no setting for it: the table it reads is changed while the block runs, where it exists.
    Elsewhere (TensorFlow, another precision) it does nothing. (A float64 GAN used after its run, outside the block,
    computes its ops on Python numbers in float32 again: draw from its saved files, or inside the block.)"""
    if keras.backend.backend() != "jax" or resolve_precision(precision) != "float64":
        yield
        return
    from keras.src.backend.common import dtypes

    _check_jax_float64()
    table = getattr(dtypes, "BIT64_TO_BIT32_DTYPE", {})
    before = table.pop("float64", None)
    try:
        yield
    finally:
        if before is not None:
            table["float64"] = before


def _training_images(config):
    """The run's images, with their labels when the GAN is conditional."""
    images, labels, record = select_images(load_fashion_mnist(), config.images, config.seed)
    return (images, labels if config.conditional else None), record


def _fit(run, images, callbacks, log, scratch=None):
    try:
        return _fit_here(run, images, callbacks, log, scratch)
    except BaseException as stopped:
        if run.last_checkpoint is None or run.last_checkpoint[0] == run.resumed_from:
            run.paths["run_json"].unlink(missing_ok=True)  # the tag's claim: this run wrote nothing under it
        elif not scratch:  # its record says it stopped (a kill -9 leaves "running": nothing runs to say it)
            with contextlib.suppress(OSError, ValueError, PrendasError):  # (never hiding why the run stopped)
                record = json.loads(run.paths["run_json"].read_text())
                artifacts.write_json(run.paths["run_json"], {**record, "status": _why(stopped)})
        if run.last_checkpoint and not scratch:  # shown under the traceback, and by the command line
            stopped.add_note(stopped_message(run, stopped))
        raise
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def stopped_message(run, stopped):
    """What a run stopped before its end (Ctrl-C, divergence, a crash) leaves, and how to go on from it."""
    path, epochs = run.last_checkpoint
    return (f"run {run.tag} {_why(stopped)} in epoch {len(run.history) + 1}; its last checkpoint, {path}, holds "
            f"{epochs} epoch{'s' if epochs != 1 else ''}. Continue it: {command()} train --resume {path} --epochs N; "
            f"draw from it: {command()} generate --model {path} (or evaluate --model {path})")


def _why(stopped):
    return {KeyboardInterrupt: "interrupted", Diverged: "diverged"}.get(type(stopped), "stopped")


def _fit_here(run, images, callbacks, log, scratch):
    config = run.config
    images, labels = images
    steps = steps_per_epoch(len(images), config.batch_size)
    note = " (includes test images)" if run.data["includes_test_images"] else ""
    replicas = devices.replicas(run.gan)
    log(
        f"run {run.tag} ({config.recipe()}) in {explain_precision(config.precision)}: {len(images):,} images{note} from "
        f"{run.data['source']}, "
        + (f"epochs {run.first_epoch + 1}-{run.last_epoch}" if config.epochs > 1 else f"epoch {run.last_epoch}")
        + (f" (or as many as end within {config.minutes:g} minutes)" if config.minutes and config.epochs > 1 else "")
        + f", {steps} step{'s' if steps > 1 else ''} of "
        f"{config.batch_size} images each"
        + (f" over {replicas} devices" if replicas > 1 else "") + ", "
        + ("writing nothing: the chief (worker 0, or the chief task) writes the files" if scratch
           else f"writing to {Path(config.out).resolve()}")
    )
    for callback in callbacks:
        if hasattr(callback, "set_run"):  # callbacks that want the run's history and frames (NotebookMonitor)
            callback.set_run(run)
    run.gan.attach_data(images, labels, config.batch_size)  # into device memory, once
    board = []
    if config.tensorboard is not None:  # (after RunRecorder, which adds the epoch's record and grid)
        from prendas.tensorboard_log import TensorBoardLog

        board = [TensorBoardLog(run, steps)]
        folder = Path(config.tensorboard)
        shown = folder.parent if folder.parent.name == "logs" else folder  # (OUT/logs holds every run's: compare them)
        log(f"TensorBoard logs in {folder}; see them with: tensorboard --logdir {shown}")
    run.gan.fit(
        devices.step_numbers(steps, run.gan),  # each step takes its batch from the attached images by its number
        epochs=run.last_epoch,
        initial_epoch=run.first_epoch,
        shuffle=False,  # RunRecorder orders each epoch, reproducibly from the seed
        callbacks=[RunRecorder(run), ProgressLogger(run, log), *board, *callbacks],
        verbose=0,
    )
    if scratch:
        log(f"done: {run.epochs_done} epochs; the chief wrote the files")
        return run
    log(
        f"done: {run.tag} ({run.epochs_done} epoch{'s' if run.epochs_done != 1 else ''}); "
        f"models in {run.paths['generator'].parent}, images in "
        f"{run.paths['grid'].parent}, checkpoint {run.paths['checkpoint']}"
    )
    return run
