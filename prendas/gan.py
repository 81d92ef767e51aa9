"""The GAN as a keras.Model: fit() drives it, train_step holds the two adversarial updates."""

import keras
import numpy as np
from keras import ops

from prendas import PrendasError
from prendas.config import GP_WEIGHT
from prendas.losses import discriminator_loss, generator_loss, gradient_penalty, interpolate
from prendas.models import NUM_CLASSES, generator_signature

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf


class GAN(keras.Model):
    """A generator and a discriminator trained against each other.

    The training images live in device memory (`attach_data`); each step takes its batch there,
    by its step number in the epoch and the epoch's order (`set_epoch_order`), and scales it to
    [-1, 1] itself. fit() only hands it the step number. `loss` is bce, wgan-gp or hinge; the generator takes one step for every `d_steps`
    discriminator steps; with `ema` > 0 a moving average of the generator's weights
    (`ema_generator`) is kept for samples, saved models and evaluation.
    """

    def __init__(self, generator, discriminator, loss="bce", d_steps=1, ema=0.0, ema_generator=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim, self.conditional = generator_signature(generator)
        self.loss_name = loss
        self.d_steps = d_steps
        self.ema = ema
        self.ema_generator = ema_generator
        if ema:
            if ema_generator is None:
                raise ValueError("ema > 0 needs an ema_generator: a second generator of the same shape")
            for target, source in zip(ema_generator.variables, generator.variables):
                target.assign(source)
        # The noise stream is a variable of the model, so a checkpoint captures it and a resumed
        # run draws the same noise as one that never stopped.
        self.noise_seed = keras.random.SeedGenerator(seed=None, name="noise_seed")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    def attach_data(self, images, labels=None, batch_size=256):
        """Keep the training images uint8 (N, 28, 28) [and labels (N,)] in device memory, in batches of batch_size.

        Pixels and labels are stored as float16, in which 0..255 are exact: half the size of float32,
        and a type that every device can gather from.
        """
        n = len(images)
        self.batch_size = int(batch_size)
        self.train_images = keras.Variable(np.asarray(images, np.float16), trainable=False, name="train_images")
        self.train_labels = None
        if self.conditional:
            if labels is None:
                raise ValueError("a conditional GAN trains on labelled images")
            self.train_labels = keras.Variable(np.asarray(labels, np.float16), trainable=False, name="train_labels")
        self.epoch_order = keras.Variable(np.arange(n, dtype=np.int32), trainable=False, name="epoch_order")

    def set_epoch_order(self, order):
        """The order in which the coming epoch visits the attached images (a permutation of 0..N-1)."""
        self.epoch_order.assign(np.asarray(order, np.int32))

    def take_batch(self, step):
        """Step `step` of the epoch: the images at positions step*B .. step*B+B-1 of its order, in [-1, 1].

        The last step of an epoch takes what is left, so it may be short.
        """
        n = ops.shape(self.epoch_order)[0]
        start = ops.cast(step, "int32") * self.batch_size
        chosen = ops.take(self.epoch_order, ops.arange(start, ops.minimum(start + self.batch_size, n)))
        real = ops.expand_dims(ops.cast(ops.take(self.train_images, chosen, axis=0), "float32") / 127.5 - 1.0, -1)
        labels = None if self.train_labels is None else ops.cast(ops.take(self.train_labels, chosen), "int32")
        return real, labels

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    @property
    def sampler(self):
        """The generator that draws the garments users see: the moving average when there is one."""
        return self.ema_generator if self.ema else self.generator

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    def build_optimizers(self):
        """Create the optimizers' slots now (fit would do it at the first step) so they can be restored."""
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def state_variables(self):
        """Every variable a resumed run needs, grouped and in a fixed order."""
        groups = {
            "generator": self.generator.variables,
            "discriminator": self.discriminator.variables,  # includes the dropout seeds, spectral norm vectors
            "g_optimizer": self.g_optimizer.variables,
            "d_optimizer": self.d_optimizer.variables,
            "noise": [self.noise_seed.state],
        }
        if self.ema:
            groups["ema_generator"] = self.ema_generator.variables
        return groups

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    # ---- the training step (TensorFlow: GradientTape) ------------------------------------------

    def train_step(self, data):
        if keras.backend.backend() != "tensorflow":
            raise PrendasError(f"training runs on the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()}")
        real, labels = self.take_batch(ops.reshape(_first(data), (-1,))[0])
        # The noise batch follows the real batch, so the short last batch of an epoch is paired
        # with as many fakes as it has real images.
        batch = ops.shape(real)[0]
        if self.d_steps == 1:
            d_loss, g_loss = self._joint_step(real, labels, batch)
            self.g_loss_tracker.update_state(g_loss, sample_weight=ops.cast(batch, "float32"))
        else:
            d_loss = self._discriminator_step(real, labels, batch)
            # The generator steps after every d_steps-th discriminator step; its loss is tracked there.
            tf.cond(
                ops.equal(self.d_optimizer.iterations % self.d_steps, 0),
                lambda: self._generator_step(batch),
                lambda: tf.constant(0.0),
            )
        self.d_loss_tracker.update_state(d_loss, sample_weight=ops.cast(batch, "float32"))
        if self.ema:
            self._update_ema()
        return {m.name: m.result() for m in self.metrics}

    def _fakes(self, batch):
        """Noise and, for a conditional GAN, labels drawn uniformly for a batch of fakes."""
        z = keras.random.normal((batch, self.latent_dim), seed=self.noise_seed)
        if not self.conditional:
            return z, None
        return z, keras.random.randint((batch, 1), 0, NUM_CLASSES, seed=self.noise_seed, dtype="int32")

    def _generate(self, z, fake_labels, training):
        # float32 out, whatever the precision inside: fakes meet the real images (float32) next.
        return ops.cast(self.generator([z, fake_labels] if self.conditional else z, training=training), "float32")

    def _judge(self, images, labels, training=True):
        return ops.cast(self.discriminator([images, labels] if self.conditional else images, training=training), "float32")

    def _d_loss(self, real, fake, real_out, fake_out, labels):
        """The discriminator's loss, with the gradient penalty for WGAN-GP."""
        d_loss = discriminator_loss(real_out, fake_out, self.loss_name)
        if self.loss_name == "wgan-gp":
            weights = keras.random.uniform((ops.shape(real)[0], 1, 1, 1), seed=self.noise_seed)
            mixed = interpolate(real, fake, weights)
            with tf.GradientTape() as gp_tape:
                gp_tape.watch(mixed)
                mixed_out = self._judge(mixed, labels)
            d_loss += GP_WEIGHT * gradient_penalty(gp_tape.gradient(mixed_out, mixed))
        return d_loss

    def _joint_step(self, real, labels, batch):
        """Both updates from one forward pass: one discriminator call on real and fake together."""
        z, fake_labels = self._fakes(batch)
        real_labels = None if labels is None else ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self._generate(z, fake_labels, training=True)
            # One call on both halves: the same result as two (there are no batch statistics) and cheaper.
            both = None if labels is None else ops.concatenate([real_labels, fake_labels], axis=0)
            out = self._judge(ops.concatenate([real, fake], axis=0), both)
            real_out, fake_out = out[:batch], out[batch:]
            d_loss = self._d_loss(real, fake, real_out, fake_out, real_labels)
            g_loss = generator_loss(fake_out, self.loss_name)
        g_grads = g_tape.gradient(self.g_optimizer.scale_loss(g_loss), self.generator.trainable_variables)
        d_grads = d_tape.gradient(self.d_optimizer.scale_loss(d_loss), self.discriminator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return d_loss, g_loss

    def _discriminator_step(self, real, labels, batch):
        z, fake_labels = self._fakes(batch)
        real_labels = None if labels is None else ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        fake = self._generate(z, fake_labels, training=True)
        with tf.GradientTape() as d_tape:
            both = None if labels is None else ops.concatenate([real_labels, fake_labels], axis=0)
            out = self._judge(ops.concatenate([real, fake], axis=0), both)
            # The penalty's interpolates pair each real image with a fake of the real image's class.
            d_loss = self._d_loss(real, fake, out[:batch], out[batch:], real_labels)
        d_grads = d_tape.gradient(self.d_optimizer.scale_loss(d_loss), self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return d_loss

    def _generator_step(self, batch):
        z, fake_labels = self._fakes(batch)
        with tf.GradientTape() as g_tape:
            fake_out = self._judge(self._generate(z, fake_labels, training=True), fake_labels)
            g_loss = generator_loss(fake_out, self.loss_name)
        g_grads = g_tape.gradient(self.g_optimizer.scale_loss(g_loss), self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
        self.g_loss_tracker.update_state(g_loss, sample_weight=ops.cast(batch, "float32"))
        return tf.constant(0.0)

    def _update_ema(self):
        """ema_w <- d * ema_w + (1 - d) * w over every generator variable (BatchNorm statistics too).

        The decay ramps up as (1 + t) / (10 + t) over the first generator steps, so the average
        does not drag the random initial weights along for thousands of steps.
        """
        t = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.ema, (1.0 + t) / (10.0 + t))
        for target, source in zip(self.ema_generator.variables, self.generator.variables):
            target.assign(decay * target + (1.0 - decay) * source)


def _first(data):
    return data[0] if isinstance(data, (tuple, list)) else data


def to_uint8(images):
    """Generator output in [-1, 1] (N, 28, 28, 1) -> uint8 pixels (N, 28, 28)."""
    images = np.asarray(images, dtype=np.float32).reshape(len(images), 28, 28)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def latent_batch(n, latent_dim, seed):
    """n latent vectors drawn from N(0, 1) with a NumPy generator, the same on every backend."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)


def balanced_labels(n):
    """Class labels 0, 1, ..., 9, 0, 1, ... for n garments: every class equally often."""
    return np.arange(n, dtype=np.int32) % NUM_CLASSES


def generate_images(generator, z, labels=None, batch_size=1024):
    """Run the generator in inference mode over latent vectors z; uint8 images (N, 28, 28).

    A conditional generator draws the classes in `labels` (N,), by default every class in turn;
    an unconditional one cannot be asked for a class.
    """
    _, conditional = generator_signature(generator)
    if labels is not None and not conditional:
        raise PrendasError("this generator was trained without labels (unconditional): it cannot draw a chosen class")
    if conditional and labels is None:
        labels = balanced_labels(len(z))
    chunks = []
    for i in range(0, len(z), batch_size):
        inputs = z[i : i + batch_size]
        if conditional:
            inputs = [inputs, np.asarray(labels[i : i + batch_size], np.int32).reshape(-1, 1)]
        chunks.append(to_uint8(generator(inputs, training=False)))
    return np.concatenate(chunks) if chunks else np.zeros((0, 28, 28), np.uint8)


def interpolate_latents(a, b, steps):
    """`steps` latent vectors on the great circle from a to b (slerp: each stays as likely under N(0, I))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    omega = np.arccos(np.clip(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)), -1.0, 1.0))
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if omega < 1e-6:
        return ((1 - t) * a + t * b).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)).astype(np.float32)


def morph_classes(generator, z, from_class, to_class, steps):
    """One garment turning from one class into another: the same noise z, the label's embedding blended.

    Only for a conditional generator built by prendas.models (noise and embedded label are concatenated).
    """
    import keras

    latent_dim, conditional = generator_signature(generator)
    if not conditional:
        raise PrendasError("this generator was trained without labels (unconditional): it has no classes to morph")
    embedding = next(layer for layer in generator.layers if isinstance(layer, keras.layers.Embedding))
    concat = next(layer for layer in generator.layers if isinstance(layer, keras.layers.Concatenate))
    # The same network from (noise, embedded label) on, so that the embedding can be blended.
    body = keras.Model(concat.input, generator.output)
    table = np.asarray(embedding.embeddings)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    blended = ((1 - t) * table[from_class] + t * table[to_class]).astype(np.float32)
    noise = np.repeat(np.asarray(z, np.float32).reshape(1, latent_dim), steps, axis=0)
    return to_uint8(body([noise, blended], training=False))
