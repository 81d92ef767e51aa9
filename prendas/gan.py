"""The GAN as a keras.Model: its state, its batches, and the training step written once for both backends.

fit() drives it. The step is arithmetic on the networks' variable values: each network runs with
stateless_call, so one function from values to losses serves tf.GradientTape and jax.vjp alike.
How gradients are taken and applied is all that differs: prendas.backend_tf and prendas.backend_jax.
"""

import functools
import importlib

import keras
import numpy as np
from keras import ops

from prendas import PrendasError, devices
from prendas.augment import DRAWS, augment
from prendas.config import EMA_WARMUP, GAMMA_FLOOR, GP_WEIGHT
from prendas.losses import (
    class_loss,
    cosine_decay,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    interpolate,
    zero_centred_penalty,
)
from prendas.models import NUM_CLASSES, generator_signature, normalize_spectra


class GAN(keras.Model):
    """A generator and a discriminator trained against each other.

    The training images live in device memory (`attach_data`); fit() hands each step only its number.
    `loss` is bce, wgan-gp, hinge or rpgan; the generator steps once every `d_steps` discriminator steps; with
    `ema` > 0 (a decay) or `ema_kimg` > 0 (a half-life) a moving average of the generator (`ema_generator`)
    draws the samples and saved models; `r1`, `r2`: the zero-centred gradient penalties' weights, falling to
    a tenth along a cosine over `gamma_kimg` thousand images when that is > 0, computed every `reg_every`-th
    discriminator step with `reg_every` times their weight (lazy regularization); `augment`: a DiffAugment
    policy (prendas.augment) for every image the discriminator sees;
    with `class_weight` > 0 the discriminator's classifier output learns the real images' classes and
    the generator is pushed to draw the class asked for (AC-GAN).
    """

    def __init__(self, generator, discriminator, loss="bce", d_steps=1, ema=0.0, ema_generator=None, class_weight=0.0,
                 r1=0.0, r2=0.0, ema_kimg=0.0, gamma_kimg=0.0, augment="none", reg_every=1, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim, self.conditional = generator_signature(generator)
        self.loss_name = loss
        # The step's full precision: float32 (the layers' variables, also under the mixed policies), or float64.
        self.float = generator.dtype_policy.variable_dtype
        self.d_steps = d_steps
        self.ema = ema
        self.ema_generator = ema_generator
        self.class_weight = class_weight
        self.r1, self.r2, self.ema_kimg, self.gamma_kimg, self.augment = r1, r2, ema_kimg, gamma_kimg, augment
        self.reg_every = reg_every
        if class_weight and not isinstance(discriminator.output, (list, tuple)):
            raise ValueError("class_weight > 0 needs a discriminator with a classifier output (classifier=True)")
        if ema or ema_kimg:
            if ema_generator is None:
                raise ValueError("a moving average needs an ema_generator: a second generator of the same shape")
            for target, source in zip(ema_generator.variables, generator.variables):
                # a copy: on JAX the two must not share a buffer (fit donates both to the step)
                target.assign(ops.copy(source))
        # The noise stream is a variable of the model, so a checkpoint captures it and a resumed
        # run draws the same noise as one that never stopped.
        self.noise_seed = keras.random.SeedGenerator(seed=None, name="noise_seed")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss", dtype=self.float)
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss", dtype=self.float)
        # Both networks are built; fit() must not trace call() with a step number to build the GAN.
        self.built = True

    def attach_data(self, images, labels=None, batch_size=256):
        """Keep the training images uint8 (N, 28, 28) [and labels (N,)] in device memory, in batches of batch_size.

        (As float16, in which 0..255 are exact: half the size of float32, and every device gathers from it.)
        """
        n = len(images)
        self.batch_size = int(batch_size)
        if self.conditional and labels is None:
            raise ValueError("a conditional GAN trains on labelled images")
        # (under MirroredStrategy, on every device)
        with devices.scope(self):
            self.train_images = keras.Variable(np.asarray(images, np.float16), trainable=False, name="train_images")
            self.train_labels = None
            if self.conditional:
                self.train_labels = keras.Variable(np.asarray(labels, np.float16), trainable=False, name="train_labels")
            self.epoch_order = keras.Variable(np.arange(n, dtype=np.int32), trainable=False, name="epoch_order")

    def data_variables(self):
        """The attached images, their labels and the epoch's order: read by the step, never written."""
        return [v for v in (self.train_images, self.train_labels, self.epoch_order) if v is not None]

    def set_epoch_order(self, order):
        """The order in which the coming epoch visits the attached images (a permutation of 0..N-1)."""
        self.epoch_order.assign(np.asarray(order, np.int32))

    def take_batch(self, step):
        """Step `step` of the epoch: the images at positions step*B .. step*B+B-1 of its order, in [-1, 1], and
        their labels (B, 1). The last step takes what is left (under JAX or replicas, see below)."""
        n = ops.shape(self.epoch_order)[0]
        start = ops.cast(step, "int32") * self.batch_size
        replica, replicas = devices.replica()
        if keras.backend.backend() == "jax" or replicas > 1:
            # XLA under JAX needs static shapes, and MirroredStrategy equal shares: the last step wraps around
            # to the start of the epoch's order. Each TensorFlow replica takes its share (JAX splits the batch).
            share = self.batch_size // replicas
            positions = (start + replica * share + ops.arange(share, dtype="int32")) % n
        else:
            positions = ops.arange(start, ops.minimum(start + self.batch_size, n))
        chosen = ops.take(self.epoch_order, positions)
        real = ops.expand_dims(ops.cast(ops.take(self.train_images, chosen, axis=0), self.float) / 127.5 - 1.0, -1)
        labels = None
        if self.train_labels is not None:
            labels = ops.reshape(ops.cast(ops.take(self.train_labels, chosen), "int32"), (-1, 1))
        return devices.split_batch(real, labels)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    @property
    def sampler(self):
        """The generator that draws the garments users see: the moving average when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def compile(self, d_optimizer, g_optimizer, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        if keras.backend.backend() == "jax":
            # JAX's fit() threads the optimizer's variables through the step as state: both optimizers'.
            self.optimizer = step_backend().OptimizerPair(g_optimizer, d_optimizer)

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
        if self.ema_generator is not None:
            groups["ema_generator"] = self.ema_generator.variables
        return groups

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    # ---- the training step ----------------------------------------------------------------------

    def train_step(self, data):
        """One step: the discriminator's update and, every d_steps-th step, the generator's; then the average.

        (On JAX it runs inside a StatelessScope over fit()'s state, where variables are read and assigned purely.)
        """
        step = ops.reshape(data[0] if isinstance(data, (tuple, list)) else data, (-1,))[0]
        real, labels = self.take_batch(step)

        def batch():
            # A branch of `when` runs, under MirroredStrategy, in each replica from the first replica's closure: each
            # takes its own share of the images there (the step number is every replica's); elsewhere the batch above.
            return self.take_batch(step) if devices.replica()[1] > 1 else (real, labels)

        with_generator = self.d_steps == 1
        self._lazily(lambda penalize: self._update(*batch(), with_generator, penalize))
        if not with_generator:
            # The generator steps after every d_steps-th discriminator step; its loss and its average follow there.
            due = lambda: ops.equal(self.d_optimizer.iterations % self.d_steps, 0)  # noqa: E731
            step_backend().when(due, lambda: self._generator_update(*batch()), self)
        logs = {m.name: m.result() for m in self.metrics}
        if devices.multi_worker(self):
            # Keras averages a multi-worker step's outputs along their first axis, which a scalar lacks.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _lazily(self, update):
        """update(penalize): with --reg-every K, the step with R1 and R2 on every K-th discriminator step and the step
        without them on the others, each whole in a branch of its own (the penalties' cond is never differentiated:
        XLA cannot compile the gradient of a cond whose branches differ, and the plain branch is the plain step)."""
        if self.reg_every == 1 or not (self.r1 or self.r2):
            update(True)
            return
        step_backend().when(self._penalty_due, lambda: update(True), self, otherwise=lambda: update(False))

    def _penalty_due(self):
        """Whether this discriminator step has R1 and R2 (with --reg-every K: every K-th, from the first)."""
        return ops.equal(self.d_optimizer.iterations % self.reg_every, 0)

    def draw_fakes(self, batch):
        """Noise and, for a conditional GAN, labels (B, 1) drawn uniformly, for a batch of fakes."""
        z = devices.share(keras.random.normal, (batch, self.latent_dim), seed=self.noise_seed, dtype=self.float)
        labels = None
        if self.conditional:
            labels = devices.share(keras.random.randint, (batch, 1), 0, NUM_CLASSES, seed=self.noise_seed, dtype="int32")
        return devices.split_batch(z, labels)

    def draw_mix(self, batch):
        """WGAN-GP's interpolation weights, one uniform draw in [0, 1) per pair (B, 1, 1, 1)."""
        return devices.share(keras.random.uniform, (batch, 1, 1, 1), seed=self.noise_seed, dtype=self.float)

    def draw_augment(self, batch):
        """The random numbers (B, augment.DRAWS) in [0, 1) that transform one batch the discriminator sees."""
        return devices.share(keras.random.uniform, (batch, DRAWS), seed=self.noise_seed, dtype=self.float)

    def _seen(self, batch):
        """Two functions that give a real and a fake batch as the discriminator sees them: under --augment, each
        transformed by draws of its own."""
        if self.augment == "none":
            return [lambda images: images] * 2
        return [functools.partial(augment, draws=self.draw_augment(batch), policy=self.augment) for _ in range(2)]

    def _update(self, real, labels, with_generator, penalize=True):
        """The discriminator's update and, with_generator, the generator's (then the average), from one forward
        pass; their losses go to the trackers. penalize: with R1 and R2 (a --reg-every step that has them).

        The discriminator judges real and fake images in two calls, as the tutorial does: one call on
        both halves computes the same scores, but the generator's gradients then go back through the
        real half's input too (measured on a Zen 4 CPU: 10% slower a step).
        """
        batch = ops.shape(real)[0]
        z, fake_labels = self.draw_fakes(batch)
        mix = self.draw_mix(batch) if self.loss_name == "wgan-gp" else None
        if mix is not None and self.conditional:
            # WGAN-GP's interpolates mix each real image with a fake of its class, scored with that class: the
            # fakes are drawn for the real images' classes (the labels drawn above are not used; the noise
            # stream stays as it was).
            fake_labels = labels
        seen_real, seen_fake = self._seen(batch)
        r1, r2 = self._gammas(penalize)
        g, d = self.generator, self.discriminator
        normalize_spectra(d)  # (spectral norm's kernels: see models.normalize_spectra)
        g_values, g_state, d_state = _values(g.trainable_variables), _values(g.non_trainable_variables), _values(
            d.non_trainable_variables)

        updates = [(self.d_optimizer, d.trainable_variables)]
        if with_generator:
            updates.append((self.g_optimizer, g.trainable_variables))

        def losses(d_values, *generator_values):
            """The losses of the networks in `updates`, as functions of their values (the generator's are fixed when
            it does not update)."""
            fake, new_g_state = self._run(g, generator_values[0] if with_generator else g_values, g_state, z, fake_labels)
            # (whatever the precision inside: fakes meet the real images next)
            real_in, fake_in = seen_real(real), seen_fake(ops.cast(fake, self.float))
            real_out, new_d_state, r1_term = self._judge(d_values, d_state, real_in, labels, r1)
            fake_out, new_d_state, r2_term = self._judge(d_values, new_d_state, fake_in, fake_labels, r2)
            # The classifier learns from the real images only; the generator from its fakes' classes.
            d_loss = self._critic_loss(real_out, fake_out, labels) + r1_term + r2_term
            if mix is not None:
                d_loss += self._interpolate_penalty(d_values, d_state, real_in, fake_in, labels, mix)
            if not with_generator:
                return (d_loss,), (new_g_state, new_d_state)
            return (d_loss, self._generator_loss(fake_out, fake_labels, real_out)), (new_g_state, new_d_state)

        out, (new_g_state, new_d_state) = step_backend().descend(losses, updates)
        _assign(g.non_trainable_variables, new_g_state)
        _assign(d.non_trainable_variables, new_d_state)
        self.d_loss_tracker.update_state(out[0], sample_weight=ops.cast(batch, self.float))
        if with_generator:
            self.g_loss_tracker.update_state(out[1], sample_weight=ops.cast(batch, self.float))
            self._update_ema()

    def _generator_update(self, real, labels):
        """The generator's update alone (between critic steps), on a batch of fakes of its own."""
        batch = ops.shape(real)[0]
        z, fake_labels = self.draw_fakes(batch)
        seen_real, seen_fake = self._seen(batch)
        g, d = self.generator, self.discriminator
        g_state, d_values, d_state = _values(g.non_trainable_variables), _values(d.trainable_variables), _values(
            d.non_trainable_variables)

        def losses(g_values):
            fake, new_g_state = self._run(g, g_values, g_state, z, fake_labels)
            real_out, new_d_state = None, d_state
            if self.loss_name == "rpgan":  # the relativistic loss scores each fake against a real image
                real_out, new_d_state = self._run(d, d_values, d_state, seen_real(real), labels)
            fake_out, new_d_state = self._run(d, d_values, new_d_state, seen_fake(ops.cast(fake, self.float)), fake_labels)
            return (self._generator_loss(fake_out, fake_labels, real_out),), (new_g_state, new_d_state)

        (g_loss,), (new_g_state, new_d_state) = step_backend().descend(losses, [(self.g_optimizer, g.trainable_variables)])
        _assign(g.non_trainable_variables, new_g_state)
        _assign(d.non_trainable_variables, new_d_state)
        self.g_loss_tracker.update_state(g_loss, sample_weight=ops.cast(batch, self.float))
        self._update_ema()

    def _gammas(self, penalize=True):
        """This step's weights of R1 and R2: --r1 and --r2, or with --gamma-kimg on their cosine way to a tenth; none
        (0) on a step without penalties (not penalize)."""
        if not penalize:
            return 0.0, 0.0
        if not self.gamma_kimg:
            return self.r1, self.r2
        kimg = ops.cast(self.d_optimizer.iterations, self.float) * (self.batch_size / 1000.0)
        scale = cosine_decay(kimg / self.gamma_kimg, final=GAMMA_FLOOR)
        return (self.r1 and self.r1 * scale), (self.r2 and self.r2 * scale)

    def _judge(self, d_values, d_state, images, labels, gamma):
        """The discriminator on images in training mode: (outputs, new state, the penalty's term).

        The penalty, gamma/2 E||grad_x D(x)||^2 (R1 at real images, R2 at fakes), comes from the same forward pass
        as the scores; with --reg-every K it is K times weighted, for only every K-th step has it (train_step's
        _lazily): the same total weight over K steps, at a fraction of the cost. gamma 0: no penalty (a term of 0).
        """
        if isinstance(gamma, (int, float)) and not gamma:  # (a number: off; a tensor: on, scheduled)
            return (*self._run(self.discriminator, d_values, d_state, images, labels), ops.zeros((), self.float))
        (_, (out, state)), gradients = step_backend().with_input_gradient(self._scorer(d_values, d_state, labels), images)
        return out, state, ops.cast(gamma * self.reg_every / 2 * zero_centred_penalty(gradients), self.float)

    def _interpolate_penalty(self, d_values, d_state, real, fake, labels, mix):
        """WGAN-GP's penalty, weighted: at the interpolates of each real image and its fake with weights `mix`, scored
        with `labels` (conditional: the fakes are of the real images' classes, see _update)."""
        mixed = interpolate(real, fake, mix)
        gradients = step_backend().with_input_gradient(self._scorer(d_values, d_state, labels), mixed)[1]
        return GP_WEIGHT * gradient_penalty(gradients)

    def _scorer(self, d_values, d_state, labels):
        """images -> (the discriminator's scores, (its outputs, its new state)): what an input gradient is taken of."""

        def scores(images):
            out, state = self._run(self.discriminator, d_values, d_state, images, labels)
            return _scores_and_logits(out, self.float)[0], (out, state)

        return scores

    def _run(self, net, values, state, images, labels):
        """A network in training mode as a pure function of its variables' values: (outputs, new state)."""
        return net.stateless_call(values, state, [images, labels] if self.conditional else images, training=True)

    def _critic_loss(self, real_out, fake_out, labels):
        """The discriminator's loss from its outputs, with its classifier's term on the real images (no penalty)."""
        real_out, real_logits = _scores_and_logits(real_out, self.float)
        loss = discriminator_loss(real_out, _scores_and_logits(fake_out, self.float)[0], self.loss_name)
        return loss + self._class_term(real_logits, labels)

    def _generator_loss(self, fake_out, fake_labels, real_out=None):
        fake_out, fake_logits = _scores_and_logits(fake_out, self.float)
        real_out = None if real_out is None else _scores_and_logits(real_out, self.float)[0]
        return generator_loss(fake_out, self.loss_name, real_out) + self._class_term(fake_logits, fake_labels)

    def _class_term(self, logits, labels):
        """The auxiliary classifier's loss, weighted: 0 without the classifier."""
        return 0.0 if logits is None else self.class_weight * class_loss(logits, labels)

    def _update_ema(self):
        """After each generator update: ema_w <- d * ema_w + (1 - d) * w over every generator variable (BatchNorm
        statistics too); nothing without an average.

        The decay ramps up as (1 + t) / (EMA_WARMUP + t) over the first t generator steps, so the average
        does not drag the random initial weights along for thousands of steps. With --ema-kimg, images
        are counted as the discriminator saw them: d_steps batches for each generator step.
        """
        if self.ema_generator is None:
            return
        t = ops.cast(self.g_optimizer.iterations, self.float)
        if self.ema_kimg:  # a half-life of ema_kimg thousand images, at most 5% of the images seen (StyleGAN2-ADA)
            images_per_update = self.batch_size * self.d_steps
            half_life = ops.minimum(self.ema_kimg * 1000.0, 0.05 * t * images_per_update)
            decay = ops.power(0.5, images_per_update / ops.maximum(half_life, 1e-8))
        else:
            decay = ops.minimum(self.ema, (1.0 + t) / (EMA_WARMUP + t))
        for target, source in zip(self.ema_generator.variables, self.generator.variables):
            target.assign(decay * target + (1.0 - decay) * source)

    def make_train_function(self, force=False):
        """On JAX, a loop of its own (backend_jax): several steps per jitted call, the state donated."""
        if keras.backend.backend() != "jax":
            return super().make_train_function(force)
        if self.train_function is None or force:
            self.train_function = step_backend().make_train_function(self)
        return self.train_function


@functools.cache
def step_backend():
    """The backend's part of the step (prendas.backend_tf or backend_jax): how gradients are taken and applied."""
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        raise PrendasError(f"training needs the TensorFlow or JAX backend (KERAS_BACKEND is {backend}); a saved "
                           "generator can be sampled on any backend")
    return importlib.import_module({"tensorflow": "prendas.backend_tf", "jax": "prendas.backend_jax"}[backend])


def _values(variables):
    return [v.value for v in variables]


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def _scores_and_logits(out, dtype):
    """A discriminator's output as (scores, class logits or None), both in the step's full precision `dtype`
    whatever the precision inside."""
    if isinstance(out, (list, tuple)):
        return ops.cast(out[0], dtype), ops.cast(out[1], dtype)
    return ops.cast(out, dtype), None

