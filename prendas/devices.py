"""Where training runs: one device, every GPU (MirroredStrategy, JAX's DataParallel), several machines
(TF_CONFIG); synchronized BatchNorm, the replica helpers the step calls, and the machine's description.
"""

import contextlib
import json
import os
import platform
import sys

import keras
import numpy as np

from prendas import PrendasError, __version__

# ---- choosing the devices (train.build_gan) -------------------------------------------------


def check_machines(config):
    """TF_CONFIG (a run over several machines) wants --devices all and TensorFlow: say so before loading anything."""
    if not cluster():
        return
    if config.devices == "1":
        raise PrendasError("TF_CONFIG is set (a run over several machines): add --devices all, or unset TF_CONFIG")
    if config.minutes:  # (each machine would stop by its own clock, and the others wait for it forever)
        raise PrendasError("--minutes is for one machine: over several (TF_CONFIG), give --epochs alone")
    if keras.backend.backend() != "tensorflow":
        raise PrendasError("TF_CONFIG is set (a run over several machines), which only the TensorFlow backend "
                           "follows: unset it, or train with KERAS_BACKEND=tensorflow")


def set_up(config):
    """Configure the backend for `config`'s devices; returns the TensorFlow strategy to build under (or None).

    JAX, --devices all: Keras's DataParallel over every device (variables replicated, each step's batch
    split along its first axis; XLA inserts the reductions: the result of one device).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        keras.distribution.set_distribution(None)
        return mirrored_strategy(config)
    distribution = None
    if config.devices == "all":
        import jax

        devices = jax.devices()
        _check_split(config.batch_size, len(devices))
        distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return None


def _check_split(batch_size, devices):
    if batch_size % devices:
        raise PrendasError(f"--batch-size {batch_size} does not split evenly over {devices} devices")


def cluster():
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
    machines, task = tf_config.get("cluster"), tf_config.get("task")
    if (not isinstance(machines, dict) or not machines or set(machines) - {"chief", "worker"}
            or not all(isinstance(hosts, list) and hosts for hosts in machines.values())):
        raise PrendasError(f'TF_CONFIG\'s "cluster" must list "worker" (and at most one "chief") addresses, like {example}')
    if (not isinstance(task, dict) or task.get("type") not in machines or not isinstance(task.get("index"), int)
            or not 0 <= task["index"] < len(machines[task["type"]])):
        raise PrendasError(f'TF_CONFIG\'s "task" must name this machine, one of its cluster\'s, like {example}')
    return machines


def machines():
    """How many machines train together (TF_CONFIG's chief and workers; 1 without it)."""
    return sum(len(cluster().get(kind, ())) for kind in ("chief", "worker")) or 1


def mirrored_strategy(config):
    """TensorFlow: None for one device; for --devices all, a MirroredStrategy over every GPU (else every CPU).

    Each replica takes its share of the step's batch (and of its noise), the optimizers sum the
    replicas' gradients of loss / replicas, and the generator's BatchNorm layers take their statistics
    over the whole batch: the result is that of one device. Several machines (TF_CONFIG names them): a
    MultiWorkerMirroredStrategy over every device of every machine, the same way (docs/devices.md).
    """
    if config.devices == "1":
        return None
    machines_ = cluster()
    import tensorflow as tf

    if not machines_:
        devices = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]
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
    if machines_:
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


def scope(model):
    """Where a model's variables are made: on every device under MirroredStrategy, else the default."""
    if keras.backend.backend() == "tensorflow":
        return model.distribute_strategy.scope()
    return contextlib.nullcontext()


def replicas(model):
    """How many devices share each step (1 unless --devices all is in force)."""
    if keras.backend.backend() == "tensorflow":
        return model.distribute_strategy.num_replicas_in_sync
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else int(distribution.device_mesh.devices.size)


def multi_worker(model):
    """True when `model` trains under TensorFlow's MultiWorkerMirroredStrategy over more than one machine."""
    return keras.backend.backend() == "tensorflow" and model.distribute_strategy.extended._in_multi_worker_mode()


def writes_files(model):
    """Whether this process writes the run's files: one machine, or the chief of several."""
    return not multi_worker(model) or model.distribute_strategy.extended.should_checkpoint


# ---- inside the step ------------------------------------------------------------------------


def replica():
    """(this replica's number, how many) under TensorFlow's MirroredStrategy; (0, 1) everywhere else."""
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica code (outside the step)
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def share(draw, shape, *args, **kwargs):
    """A random draw for this replica's share of the batch (`shape` is the share's).

    Every replica draws the whole batch from the same seed state and keeps its own rows, so the
    replicas together see exactly the numbers one device would.
    """
    index, count = replica()
    if count == 1:
        return draw(shape, *args, **kwargs)
    whole = draw((shape[0] * count, *shape[1:]), *args, **kwargs)
    return whole[index * shape[0] : (index + 1) * shape[0]]


def split_batch(*arrays):
    """With --devices all on JAX (a Keras distribution), lay each array's first axis over the devices."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return arrays
    import jax

    return tuple(
        None if x is None else jax.lax.with_sharding_constraint(x, distribution.get_data_layout(x.shape).backend_layout)
        for x in arrays
    )


def step_numbers(steps, model):
    """What fit() iterates over in an epoch: batches of the step numbers 0 .. steps-1, one per device.

    The images stay in the GAN's device memory (GAN.attach_data); a step takes its batch there by
    its number, so no image crosses from the host during training. TensorFlow gets a tf.data
    pipeline (no Python per step; MirroredStrategy splits each batch, one number per replica), other
    backends a PyDataset (JAX's DataParallel splits it the same way).
    """
    copies = replicas(model)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        numbers = tf.data.Dataset.range(steps).map(lambda step: tf.fill([copies], step))
        # Without tf.data's autotuning: its background thread can take seconds to notice the end of an epoch, and
        # Keras, dropping the epoch's iterator, waits for it before the next epoch's first step.
        options = tf.data.Options()
        options.autotune.enabled = False
        return numbers.with_options(options)
    return _StepNumbers(steps, copies)


class _StepNumbers(keras.utils.PyDataset):
    def __init__(self, steps, copies):
        super().__init__()
        self.steps, self.copies = steps, copies

    def __len__(self):
        return self.steps

    def __getitem__(self, step):
        return np.full((self.copies,), step, np.int32)


# ---- synchronized BatchNorm (--devices all on TensorFlow) -----------------------------------


def _batch_norms(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def set_synchronized_batch_norm(model, on):
    """Make the BatchNormalization layers of `model` compute their statistics across replicas (TensorFlow)."""
    for layer in _batch_norms(model):
        layer.synchronized = on


@contextlib.contextmanager
def unsynchronized(model):
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


# ---- the machine, for records ----------------------------------------------------------------


def gpu_names():
    """The GPUs the backend sees, by name."""
    if keras.backend.backend() == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    return [tf.config.experimental.get_device_details(g).get("device_name", "GPU")
            for g in tf.config.list_physical_devices("GPU")]


def machine_name():
    """The processor (or GPU) in a few words, for the record: 'AMD EPYC, 2 CPUs, AVX-512 with bf16'.

    The widest vector instructions are named, since they decide a CPU's speed here (and the same model
    name covers processors with and without AVX-512).
    """
    names = gpu_names()
    if names:
        return f"{len(names)} x {names[0]}"
    name, flags = cpu()
    name = name or platform.processor() or platform.machine()
    vectors = ["AVX-512" + (" with bf16" if "avx512_bf16" in flags else "")] if "avx512f" in flags else (
        ["AVX2"] if "avx2" in flags else [])
    held = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip()  # (what TensorFlow's kernels may use, where it is held)
    return ", ".join([name, f"{os.cpu_count()} CPUs", *vectors] + ([f"oneDNN held to {held}"] if held else []))


def cpu():
    """(the processor's model name or None, its feature flags) from /proc/cpuinfo's first processor."""
    name, flags = None, set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name is None:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
            if name and flags:
                break
    except OSError:
        pass
    return name, flags


def versions():
    """The versions of what computed a figure: prendas, Python, Keras, NumPy and the backend."""
    found = {"prendas": __version__, "python": sys.version.split()[0], "keras": keras.__version__, "numpy": np.__version__}
    backend = keras.backend.backend()
    if backend in ("tensorflow", "jax"):
        found[backend] = __import__(backend).__version__
    return found
