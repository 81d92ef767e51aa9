"""Training throughput, side by side: the project's step against a plain baseline written the way
TensorFlow's DCGAN tutorial writes it (a tf.function step with two GradientTapes over tf.data batches).

Same networks, same batch size, same Adam settings, same images. The two alternate in one process
(project, baseline, project, baseline, ...) so that whatever else the machine does falls on both; the
figures are medians over the repetitions. FLOPs are counted from the layers, so achieved FLOP/s can
be read against the hardware's peak.
"""

import resource
import statistics
import time

import keras
import numpy as np

from prendas import devices
from prendas.config import TrainConfig, check_bench
from prendas.gan import step_backend
from prendas.models import build_discriminator, build_generator
from prendas.precision import native_bf16, resolve_precision


def forward_flops(model):
    """FLOPs (2 x multiply-adds) of one image through the model's Dense and convolution layers.

    A transposed convolution is counted per input pixel (each spreads a kernel over the output), a
    convolution per output pixel; biases, activations and normalization are left out (they are small).
    """
    macs = 0
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, keras.layers.SpectralNormalization) else layer
        if isinstance(inner, keras.layers.Conv2DTranspose):
            macs += int(np.prod(layer.input.shape[1:3])) * int(np.prod(inner.kernel.shape))
        elif isinstance(inner, keras.layers.Conv2D):
            macs += int(np.prod(layer.output.shape[1:3])) * int(np.prod(inner.kernel.shape))
        elif isinstance(inner, keras.layers.Dense):
            macs += int(np.prod(inner.kernel.shape))
    return 2 * macs


def step_flops(generator, discriminator):
    """FLOPs of one bce training step per real image: the generator forward and backward (about 3x its
    forward), the discriminator forward and backward on a real and a fake image (2 x 3x its forward)."""
    return 3 * forward_flops(generator) + 6 * forward_flops(discriminator)


def gpu_peak_bytes():
    """The most memory the first GPU has held."""
    if keras.backend.backend() == "jax":
        import jax

        return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    import tensorflow as tf

    return tf.config.experimental.get_memory_info("GPU:0")["peak"]


class TutorialBaseline:
    """TensorFlow's DCGAN tutorial loop, as written there: float images in a tf.data pipeline
    (shuffle, batch), a @tf.function step with two GradientTapes, the discriminator called on real and
    fake images separately, Keras's BinaryCrossentropy, Adam at 1e-4."""

    def __init__(self, images, batch_size, latent_dim, seed):
        import tensorflow as tf

        keras.utils.set_random_seed(seed)
        self.generator = build_generator(latent_dim)
        self.discriminator = build_discriminator()
        g_opt, d_opt = keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)
        cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)
        train_images = (images.reshape(-1, 28, 28, 1).astype("float32") - 127.5) / 127.5
        dataset = tf.data.Dataset.from_tensor_slices(train_images).shuffle(len(train_images)).batch(batch_size)
        self.iterator = iter(dataset.repeat())
        generator, discriminator = self.generator, self.discriminator

        @tf.function
        def train_step(images):
            noise = tf.random.normal([batch_size, latent_dim])
            with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
                generated_images = generator(noise, training=True)
                real_output = discriminator(images, training=True)
                fake_output = discriminator(generated_images, training=True)
                gen_loss = cross_entropy(tf.ones_like(fake_output), fake_output)
                disc_loss = cross_entropy(tf.ones_like(real_output), real_output) + cross_entropy(
                    tf.zeros_like(fake_output), fake_output
                )
            g_grads = gen_tape.gradient(gen_loss, generator.trainable_variables)
            d_grads = disc_tape.gradient(disc_loss, discriminator.trainable_variables)
            g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
            d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))
            return disc_loss

        self.train_step = train_step

    def run(self, steps):
        """`steps` training steps; returns once the last one has finished."""
        for _ in range(steps):
            loss = self.train_step(next(self.iterator))
        return float(loss)  # waits for the device


class ProjectStep:
    """The project's training, as `prendas train` runs it: the GAN's compiled train function (what fit()
    calls) over its device-resident images, steps_per_execution steps per call."""

    def __init__(self, images, labels, config):
        from prendas.train import build_gan

        self.gan = build_gan(config)
        self.gan.attach_data(images, labels, config.batch_size)
        steps = devices.step_numbers(len(images) // config.batch_size, self.gan)
        self.jax = keras.backend.backend() == "jax"
        if self.jax:
            from prendas.backend_jax import state_variables

            # JAX's train function is pure: it takes the variables' values and gives back new ones,
            # as fit() does between syncs.
            self.iterator = _forever(steps)
            # copies: the train function donates (consumes) the buffers it is given
            self.state = tuple([keras.ops.copy(v.value) for v in variables] for variables in state_variables(self.gan))
        else:
            self.iterator = iter(steps.repeat())
        self.per_call = config.steps_per_execution
        self.gan.make_train_function()

    def run(self, steps):
        for _ in range(steps // self.per_call):
            if self.jax:
                logs, self.state = self.gan.train_function(self.state, self.iterator)
            else:
                logs = self.gan.train_function(self.iterator)
        return float(logs["d_loss"])  # waits for the device


def _forever(steps):
    while True:
        for i in range(len(steps)):
            yield steps[i]


def project_config(preset, precision=None, **settings):
    """The config of the project's side: `preset`'s recipe with `settings` over it, in `precision` (None: the preset's,
    else float32; "auto" resolved as a run resolves it)."""
    given = {"precision": precision} if precision else {}
    config = TrainConfig.preset(preset, **settings, **given)
    return config.replace(precision=resolve_precision(config.precision))


def whole_batches(batch_size):
    """The training images and their labels, whole batches only (60,000 // B of them), so that no side ever runs a
    short batch."""
    from prendas.data import load_fashion_mnist

    data = load_fashion_mnist()
    n = len(data.x_train) // batch_size * batch_size
    return data.x_train[:n], data.y_train[:n]


def alternate(sides, steps, repeats, batch_size):
    """{name: [images/s of each timed run]} of sides ({name: an object whose run(steps) trains `steps` steps}): after
    one warm-up run each (tracing and the first steps are not measured), `repeats` rounds of one timed run of each
    side in turn, so that whatever else the machine does falls on all of them alike. batch_size: the images of a
    step, one number for all sides or {name: number}."""
    batches = batch_size if isinstance(batch_size, dict) else dict.fromkeys(sides, batch_size)
    for side in sides.values():
        side.run(steps)
    rates = {name: [] for name in sides}
    for _ in range(repeats):
        for name, side in sides.items():
            started = time.perf_counter()
            side.run(steps)
            rates[name].append(steps * batches[name] / (time.perf_counter() - started))
    return rates


def run_benchmark(batch_size=256, steps=10, repeats=3, latent_dim=100, steps_per_execution=1, xla=False,
                  precision=None, seed=0, preset="tutorial", log=print):
    """Both loops, alternating, `repeats` times `steps` steps each after a warm-up; the medians and the rest.

    The project's step trains `preset`'s recipe (the tutorial's loop stays the tutorial's), in `precision` (None: the
    preset's, else float32; "auto" resolved as a run resolves it). On JAX the
    project's step runs alone: the tutorial's loop is TensorFlow code (its figures are None).
    """
    step_backend()  # (TensorFlow or JAX, else a one-line error)
    backend = keras.backend.backend()
    check_bench(batch_size, steps, repeats, steps_per_execution)
    config = project_config(preset, precision, batch_size=batch_size, latent_dim=latent_dim, seed=seed,
                            steps_per_execution=steps_per_execution, xla=xla)
    precision = config.precision
    images, labels = whole_batches(batch_size)
    sides = {"project": ProjectStep(images, labels if config.conditional else None, config)}
    if backend == "tensorflow":
        sides["baseline"] = TutorialBaseline(images, batch_size, latent_dim, seed)
    flops = step_flops(sides["project"].gan.generator, sides["project"].gan.discriminator)
    rates = alternate(sides, steps, repeats, batch_size)
    project = statistics.median(rates["project"])
    baseline = statistics.median(rates["baseline"]) if "baseline" in rates else None
    gpus = devices.gpu_names()
    memory = {"process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if gpus:
        memory["gpu_peak_bytes"] = gpu_peak_bytes()
    result = {
        "machine": devices.machine_name(),
        "native_bf16": native_bf16(),
        "backend": backend,
        "device": "GPU" if gpus else "CPU",
        "versions": devices.versions(),
        "settings": {"recipe": config.recipe(), "batch_size": batch_size, "steps": steps, "repeats": repeats,
                     "latent_dim": latent_dim,
                     "steps_per_execution": steps_per_execution, "xla": xla, "precision": precision},
        "project_images_per_s": round(project, 1),
        "baseline_images_per_s": None if baseline is None else round(baseline, 1),
        "ratio": None if baseline is None else round(project / baseline, 3),
        "project_runs": [round(r, 1) for r in rates["project"]],
        "baseline_runs": [round(r, 1) for r in rates.get("baseline", [])],
        "generator_forward_flops": forward_flops(sides["project"].gan.generator),
        "discriminator_forward_flops": forward_flops(sides["project"].gan.discriminator),
        "flops_per_image": flops,
        "project_flops_per_s": round(project * flops),
        "baseline_flops_per_s": None if baseline is None else round(baseline * flops),
        "memory": memory,
    }
    log(format_report(result))
    return result


def format_report(r):
    s = r["settings"]
    compiled = "XLA" if s["xla"] or r["backend"] == "jax" else "tf.function"
    name = {"tensorflow": "TensorFlow", "jax": "JAX"}[r["backend"]]
    baseline = (
        f"{'tutorial baseline':22}{r['baseline_images_per_s']:>10,.0f}{r['baseline_flops_per_s'] / 1e9:>10.1f}   "
        + " ".join(f"{x:,.0f}" for x in r["baseline_runs"])
        if r["ratio"] is not None
        else f"{'tutorial baseline':22}  (TensorFlow code: not run on the {name} backend)"
    )
    lines = [
        f"machine: {r['machine']}; {r['backend']} on {r['device']} ({name} {r['versions'][r['backend']]}); bfloat16 "
        + ("in hardware" if r.get("native_bf16") else "emulated (no AVX512_BF16 or AMX)"),
        f"project: {s.get('recipe', 'bce')}, batch {s['batch_size']}, {s['precision']}, "
        f"{s['steps_per_execution']} step(s) per call, {compiled}; "
        f"medians of {s['repeats']} alternating runs of {s['steps']} steps",
        f"{'':22}{'images/s':>10}{'GFLOP/s':>10}   runs",
        f"{'project step':22}{r['project_images_per_s']:>10,.0f}{r['project_flops_per_s'] / 1e9:>10.1f}   "
        + " ".join(f"{x:,.0f}" for x in r["project_runs"]),
        baseline,
        *([f"ratio project / baseline: {r['ratio']:.2f}"] if r["ratio"] is not None else []),
        f"FLOPs per image: generator {r['generator_forward_flops'] / 1e6:.1f} M forward, discriminator "
        f"{r['discriminator_forward_flops'] / 1e6:.1f} M forward, one training step {r['flops_per_image'] / 1e9:.3f} G",
        f"peak memory: {r['memory']['process_peak_rss_bytes'] / 2**30:.2f} GiB (the process, both loops)"
        + (f", GPU {r['memory']['gpu_peak_bytes'] / 2**30:.2f} GiB" if r["memory"].get("gpu_peak_bytes") else ""),
    ]
    return "\n".join(lines)
