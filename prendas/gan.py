"""The GAN as a keras.Model: fit() drives it, train_step holds the two adversarial updates."""

import keras
import numpy as np
from keras import ops

from prendas import PrendasError
from prendas.losses import discriminator_loss, generator_loss

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf


class GAN(keras.Model):
    """A generator and a discriminator trained against each other, one step per batch of real images.

    The batches are uint8 images (B, 28, 28); the step scales them to [-1, 1] itself so that the
    data stays small on its way to the device.
    """

    def __init__(self, generator, discriminator, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = generator.input_shape[-1]
        # The noise stream is a variable of the model, so a checkpoint captures it and a resumed
        # run draws the same noise as one that never stopped.
        self.noise_seed = keras.random.SeedGenerator(seed=None, name="noise_seed")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

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
        return {
            "generator": self.generator.variables,
            "discriminator": self.discriminator.variables,  # includes the dropout seed states
            "g_optimizer": self.g_optimizer.variables,
            "d_optimizer": self.d_optimizer.variables,
            "noise": [self.noise_seed.state],
        }

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def train_step(self, data):
        if keras.backend.backend() != "tensorflow":
            raise PrendasError(f"training runs on the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()}")
        real = data[0] if isinstance(data, (tuple, list)) else data
        real = ops.expand_dims(ops.cast(real, "float32") / 127.5 - 1.0, -1)
        # The noise batch follows the real batch, so the short last batch of an epoch is paired
        # with as many fakes as it has real images.
        batch = ops.shape(real)[0]
        z = keras.random.normal((batch, self.latent_dim), seed=self.noise_seed)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(z, training=True)
            # One discriminator call on both halves: the same result as two (it has no
            # batch statistics) and cheaper.
            logits = self.discriminator(ops.concatenate([real, fake], axis=0), training=True)
            real_logits, fake_logits = logits[:batch], logits[batch:]
            d_loss = discriminator_loss(real_logits, fake_logits)
            g_loss = generator_loss(fake_logits)
        g_grads = g_tape.gradient(g_loss, self.generator.trainable_variables)
        d_grads = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        weight = ops.cast(batch, "float32")
        self.d_loss_tracker.update_state(d_loss, sample_weight=weight)
        self.g_loss_tracker.update_state(g_loss, sample_weight=weight)
        return {m.name: m.result() for m in self.metrics}


def to_uint8(images):
    """Generator output in [-1, 1] (N, 28, 28, 1) -> uint8 pixels (N, 28, 28)."""
    images = np.asarray(images, dtype=np.float32).reshape(len(images), 28, 28)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def latent_batch(n, latent_dim, seed):
    """n latent vectors drawn from N(0, 1) with a NumPy generator, the same on every backend."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)


def generate_images(generator, z, batch_size=1024):
    """Run the generator in inference mode over latent vectors z; uint8 images (N, 28, 28)."""
    chunks = [to_uint8(generator(z[i : i + batch_size], training=False)) for i in range(0, len(z), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 28, 28), np.uint8)
