"""The GAN as a keras.Model: fit() drives it, train_step holds the two adversarial updates."""

import contextlib

import keras
import numpy as np
from keras import ops

from prendas import PrendasError
from prendas.config import GP_WEIGHT
from prendas.losses import class_loss, discriminator_loss, generator_loss, gradient_penalty, interpolate
from prendas.models import NUM_CLASSES, generator_signature

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf


class GAN(keras.Model):
    """A generator and a discriminator trained against each other.

    The training images live in device memory (`attach_data`); each step takes its batch there,
    by its step number in the epoch and the epoch's order (`set_epoch_order`), and scales it to
    [-1, 1] itself. fit() only hands it the step number. `loss` is bce, wgan-gp or hinge; the
    generator takes one step for every `d_steps` discriminator steps; with `ema` > 0 a moving
    average of the generator's weights (`ema_generator`) is kept for samples, saved models and
    evaluation. With `class_weight` > 0 (a conditional GAN whose discriminator has a classifier
    output) the discriminator also learns the class of the real images and the generator is pushed
    to draw images it classifies as the class asked for, each term weighted by class_weight (AC-GAN).
    """

    def __init__(
        self, generator, discriminator, loss="bce", d_steps=1, ema=0.0, ema_generator=None, class_weight=0.0, **kwargs
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim, self.conditional = generator_signature(generator)
        self.loss_name = loss
        self.d_steps = d_steps
        self.ema = ema
        self.ema_generator = ema_generator
        self.class_weight = class_weight
        if class_weight and not isinstance(discriminator.output, (list, tuple)):
            raise ValueError("class_weight > 0 needs a discriminator with a classifier output (classifier=True)")
        if ema:
            if ema_generator is None:
                raise ValueError("ema > 0 needs an ema_generator: a second generator of the same shape")
            for target, source in zip(ema_generator.variables, generator.variables):
                # a copy: on JAX the two must not share a buffer (fit donates both to the step)
                target.assign(ops.copy(source))
        # The noise stream is a variable of the model, so a checkpoint captures it and a resumed
        # run draws the same noise as one that never stopped.
        self.noise_seed = keras.random.SeedGenerator(seed=None, name="noise_seed")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        # Both networks are built; fit() must not trace call() with a step number to build the GAN.
        self.built = True

    def attach_data(self, images, labels=None, batch_size=256):
        """Keep the training images uint8 (N, 28, 28) [and labels (N,)] in device memory, in batches of batch_size.

        Pixels and labels are stored as float16, in which 0..255 are exact: half the size of float32,
        and a type that every device can gather from.
        """
        n = len(images)
        self.batch_size = int(batch_size)
        if self.conditional and labels is None:
            raise ValueError("a conditional GAN trains on labelled images")
        # (under MirroredStrategy, on every device)
        with self.distribute_strategy.scope() if keras.backend.backend() == "tensorflow" else contextlib.nullcontext():
            self.train_images = keras.Variable(np.asarray(images, np.float16), trainable=False, name="train_images")
            self.train_labels = None
            if self.conditional:
                self.train_labels = keras.Variable(np.asarray(labels, np.float16), trainable=False, name="train_labels")
            self.epoch_order = keras.Variable(np.arange(n, dtype=np.int32), trainable=False, name="epoch_order")

    def set_epoch_order(self, order):
        """The order in which the coming epoch visits the attached images (a permutation of 0..N-1)."""
        self.epoch_order.assign(np.asarray(order, np.int32))

    def take_batch(self, step):
        """Step `step` of the epoch: the images at positions step*B .. step*B+B-1 of its order, in [-1, 1].

        The last step of an epoch takes what is left, so it may be short (on JAX, and on TensorFlow
        with several replicas, it is filled up from the start of the order instead: every step there
        has the same shape). Under MirroredStrategy each replica takes its share of the batch.
        """
        n = ops.shape(self.epoch_order)[0]
        start = ops.cast(step, "int32") * self.batch_size
        replica, replicas = _replica()
        if keras.backend.backend() == "jax" or replicas > 1:
            # XLA under JAX needs static shapes, and MirroredStrategy equal shares: the last step wraps
            # around to the start of the epoch's order, so every step has B images and every image is
            # seen each epoch. Each TensorFlow replica takes its share (JAX splits the batch itself).
            share = self.batch_size // replicas
            positions = (start + replica * share + ops.arange(share, dtype="int32")) % n
        else:
            positions = ops.arange(start, ops.minimum(start + self.batch_size, n))
        chosen = ops.take(self.epoch_order, positions)
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
        if keras.backend.backend() == "jax":
            # JAX's fit() threads the optimizer's variables through the step as state: both optimizers'.
            self.optimizer = _OptimizerPair(g_optimizer, d_optimizer)

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
            raise PrendasError(f"training runs on TensorFlow or JAX; KERAS_BACKEND is {keras.backend.backend()}")
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
            self._every_d_steps(self._generator_step, batch)
        self.d_loss_tracker.update_state(d_loss, sample_weight=ops.cast(batch, "float32"))
        if self.ema:
            self._update_ema()
        logs = {m.name: m.result() for m in self.metrics}
        if multi_worker(self):
            # Keras averages a multi-worker step's outputs along their first axis, which a scalar lacks.
            logs = {name: ops.reshape(value, (1,)) for name, value in logs.items()}
        return logs

    def _every_d_steps(self, step, batch):
        """step(batch) after every d_steps-th discriminator step, as a tf.cond.

        Under MirroredStrategy the step synchronizes the replicas (gradients, batch statistics), which
        a cond inside one replica may not do: there the cond is taken across the replicas and runs
        the step on each of them.
        """

        def due():
            return ops.equal(self.d_optimizer.iterations % self.d_steps, 0)

        def skip():
            return tf.constant(0.0)

        if _replica()[1] == 1:
            return tf.cond(due(), lambda: step(batch), skip)

        def across(strategy, batch):
            def run():
                strategy.extended.call_for_each_replica(step, args=(batch,))
                return skip()

            return tf.cond(due(), run, skip)

        return tf.distribute.get_replica_context().merge_call(across, args=(batch,))

    def _fakes(self, batch):
        """Noise and, for a conditional GAN, labels drawn uniformly for a batch of fakes."""
        z = _share(keras.random.normal, (batch, self.latent_dim), seed=self.noise_seed)
        if not self.conditional:
            return z, None
        return z, _share(keras.random.randint, (batch, 1), 0, NUM_CLASSES, seed=self.noise_seed, dtype="int32")

    @staticmethod
    def _for_gradients(loss):
        """The loss whose gradients a replica hands the optimizer, which sums them over the replicas."""
        replicas = _replica()[1]
        return loss if replicas == 1 else loss / replicas

    def _generate(self, z, fake_labels, training):
        # float32 out, whatever the precision inside: fakes meet the real images (float32) next.
        return ops.cast(self.generator([z, fake_labels] if self.conditional else z, training=training), "float32")

    def _judge(self, images, labels, training=True):
        """The discriminator's scores and its class logits (None without the classifier)."""
        return _scores_and_logits(self.discriminator([images, labels] if self.conditional else images, training=training))

    def _class_term(self, logits, labels):
        """The auxiliary classifier's loss, weighted: 0 without the classifier."""
        return 0.0 if logits is None else self.class_weight * class_loss(logits, labels)

    def _d_loss(self, real, fake, real_out, fake_out, labels):
        """The discriminator's loss, with the gradient penalty for WGAN-GP."""
        d_loss = discriminator_loss(real_out, fake_out, self.loss_name)
        if self.loss_name == "wgan-gp":
            weights = _share(keras.random.uniform, (ops.shape(real)[0], 1, 1, 1), seed=self.noise_seed)
            mixed = interpolate(real, fake, weights)
            with tf.GradientTape() as gp_tape:
                gp_tape.watch(mixed)
                mixed_out = self._judge(mixed, labels)[0]
            d_loss += GP_WEIGHT * gradient_penalty(gp_tape.gradient(mixed_out, mixed))
        return d_loss

    def _joint_step(self, real, labels, batch):
        """Both updates from one forward pass (the generator's gradients flow back through the same fake scores).

        The discriminator judges real and fake images in two calls, as the tutorial does: one call on
        both halves computes the same scores, but the generator's gradients then go back through the
        real half's input too (measured on a Zen 4 CPU: 10% slower a step).
        """
        z, fake_labels = self._fakes(batch)
        real_labels = None if labels is None else ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self._generate(z, fake_labels, training=True)
            real_out, real_logits = self._judge(real, real_labels)
            fake_out, fake_logits = self._judge(fake, fake_labels)
            # The classifier learns from the real images only; the generator from its fakes' classes.
            d_loss = self._d_loss(real, fake, real_out, fake_out, real_labels) + self._class_term(real_logits, real_labels)
            g_loss = generator_loss(fake_out, self.loss_name) + self._class_term(fake_logits, fake_labels)
            # (mixed_float16: the loss scale must be applied where the tapes see it)
            scaled_g = self.g_optimizer.scale_loss(self._for_gradients(g_loss))
            scaled_d = self.d_optimizer.scale_loss(self._for_gradients(d_loss))
        g_grads = g_tape.gradient(scaled_g, self.generator.trainable_variables)
        d_grads = d_tape.gradient(scaled_d, self.discriminator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables))
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return d_loss, g_loss

    def _discriminator_step(self, real, labels, batch):
        z, fake_labels = self._fakes(batch)
        real_labels = None if labels is None else ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        fake = self._generate(z, fake_labels, training=True)
        with tf.GradientTape() as d_tape:
            real_out, real_logits = self._judge(real, real_labels)
            fake_out, _ = self._judge(fake, fake_labels)
            # The penalty's interpolates pair each real image with a fake of the real image's class.
            d_loss = self._d_loss(real, fake, real_out, fake_out, real_labels) + self._class_term(real_logits, real_labels)
            scaled = self.d_optimizer.scale_loss(self._for_gradients(d_loss))
        d_grads = d_tape.gradient(scaled, self.discriminator.trainable_variables)
        self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables))
        return d_loss

    def _generator_step(self, batch):
        z, fake_labels = self._fakes(batch)
        with tf.GradientTape() as g_tape:
            fake_out, logits = self._judge(self._generate(z, fake_labels, training=True), fake_labels)
            g_loss = generator_loss(fake_out, self.loss_name) + self._class_term(logits, fake_labels)
            scaled = self.g_optimizer.scale_loss(self._for_gradients(g_loss))
        g_grads = g_tape.gradient(scaled, self.generator.trainable_variables)
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

    # ---- the training step (JAX: stateless, jitted, several steps per call) ---------------------

    def make_train_function(self, force=False):
        """On JAX: one jitted call runs `steps_per_execution` steps in a lax.scan, with the state donated.

        (Keras's own JAX loop calls a jitted single step K times from Python.) fit() hands each call
        an iterator over step numbers; the call takes up to K of them.
        """
        if keras.backend.backend() != "jax":
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        import jax

        def run_steps(state, first, count):
            def body(state, step):
                logs, state = self.jax_train_step(state, step)
                return state, logs

            # A call's steps are consecutive within one epoch: its numbers are made here, on the device.
            steps = ops.reshape(first, (-1,))[0].astype("int32") + ops.arange(count, dtype="int32")
            state, logs = jax.lax.scan(body, state, steps)
            return jax.tree.map(lambda x: x[-1], logs), state

        shardings = None
        if keras.distribution.distribution() is not None:  # --devices all: the state stays where it is
            shardings = (None, tuple([v.value.sharding for v in variables] for variables in self.jax_state_variables()))
        run_steps = jax.jit(run_steps, donate_argnums=0, static_argnums=2, out_shardings=shardings)
        per_call = self.steps_per_execution

        def train_function(state, iterator):
            # Only the first step number is used, and never brought back to the host (no sync per call).
            items = [_first(data) for _, data in zip(range(per_call), iterator)]
            if not items:
                raise StopIteration
            return run_steps(state, items[0], len(items))

        self.train_function = train_function
        return train_function

    def jax_state_variables(self):
        """The variables behind JAX fit()'s state, in its four groups and order."""
        return (self.trainable_variables, self.non_trainable_variables, self.optimizer.variables, self.metrics_variables)

    def jax_train_step(self, state, step):
        """One step as a pure function of fit()'s state (trainable, non-trainable, optimizer, metric values).

        The variables are read and written through a StatelessScope over that state; the networks run
        with stateless_call, gradients come from jax.vjp and the updates from optimizer.stateless_apply.
        """
        groups = self.jax_state_variables()
        mapping = [(v, x) for variables, values in zip(groups, state) for v, x in zip(variables, values)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            real, labels = _split_batch(self.take_batch(step))
            batch = real.shape[0]
            real_labels = None if labels is None else ops.reshape(labels, (-1, 1))
            z, fake_labels = _split_batch(self._fakes(batch))
            if self.d_steps == 1:
                d_loss, g_loss = self._jax_joint_step(scope, real, real_labels, z, fake_labels)
                self.g_loss_tracker.update_state(g_loss, sample_weight=float(batch))
            else:
                d_loss = self._jax_discriminator_step(scope, real, real_labels, z, fake_labels)
                self._jax_generator_step(scope, batch)
            self.d_loss_tracker.update_state(d_loss, sample_weight=float(batch))
            if self.ema:
                self._update_ema()
            logs = {m.name: m.result() for m in self.metrics}
            new_state = tuple(self._values(scope, variables) for variables in groups)
        return logs, new_state

    @staticmethod
    def _values(scope, variables):
        return [scope.get_current_value(v) for v in variables]

    @staticmethod
    def _assign(variables, values):
        for variable, value in zip(variables, values):
            variable.assign(value)

    def _stateless(self, net, trainable, non_trainable, inputs, labels):
        out, non_trainable = net.stateless_call(
            trainable, non_trainable, [inputs, labels] if self.conditional else inputs, training=True
        )
        # (a discriminator with the classifier gives two outputs: _scores_and_logits casts those)
        return (out if isinstance(out, (list, tuple)) else ops.cast(out, "float32")), non_trainable

    def _jax_d_loss(self, d_values, d_state, real, fake, real_out, fake_out, labels):
        """The discriminator's loss from its outputs on real and fake, with WGAN-GP's penalty (a gradient inside)."""
        import jax

        real_out, real_logits = _scores_and_logits(real_out)
        d_loss = discriminator_loss(real_out, _scores_and_logits(fake_out)[0], self.loss_name)
        d_loss += self._class_term(real_logits, labels)
        if self.loss_name == "wgan-gp":
            weights = keras.random.uniform((real.shape[0], 1, 1, 1), seed=self.noise_seed)
            mixed = interpolate(real, fake, weights)

            def critic_sum(images):
                out = self._stateless(self.discriminator, d_values, d_state, images, labels)[0]
                return ops.sum(_scores_and_logits(out)[0])

            d_loss += GP_WEIGHT * gradient_penalty(jax.grad(critic_sum)(mixed))
        return d_loss

    def _jax_joint_step(self, scope, real, real_labels, z, fake_labels):
        """Both updates from one forward pass, as _joint_step: gradients by two pulls through one jax.vjp."""
        import jax

        g, d = self.generator, self.discriminator
        g_state = self._values(scope, g.non_trainable_variables)
        d_state = self._values(scope, d.non_trainable_variables)

        def losses(g_values, d_values):
            fake, new_g_state = self._stateless(g, g_values, g_state, z, fake_labels)
            real_out, new_d_state = self._stateless(d, d_values, d_state, real, real_labels)
            fake_out, new_d_state = self._stateless(d, d_values, new_d_state, fake, fake_labels)
            d_loss = self._jax_d_loss(d_values, d_state, real, fake, real_out, fake_out, real_labels)
            fake_out, fake_logits = _scores_and_logits(fake_out)
            g_loss = generator_loss(fake_out, self.loss_name) + self._class_term(fake_logits, fake_labels)
            scaled = (self.d_optimizer.scale_loss(d_loss), self.g_optimizer.scale_loss(g_loss))
            return scaled, (d_loss, g_loss, new_g_state, new_d_state)

        g_values = self._values(scope, g.trainable_variables)
        d_values = self._values(scope, d.trainable_variables)
        scaled, pull, (d_loss, g_loss, new_g_state, new_d_state) = jax.vjp(losses, g_values, d_values, has_aux=True)
        one, zero = ops.ones_like(scaled[0]), ops.zeros_like(scaled[0])
        # Under jit, the parts of each pull that are not used (d_loss into the generator) are never computed.
        d_grads = pull((one, zero))[1]
        g_grads = pull((zero, one))[0]
        self._apply(scope, self.d_optimizer, d, d_values, d_grads)
        self._apply(scope, self.g_optimizer, g, g_values, g_grads)
        self._assign(g.non_trainable_variables, new_g_state)
        self._assign(d.non_trainable_variables, new_d_state)
        return d_loss, g_loss

    def _apply(self, scope, optimizer, net, values, grads):
        new_values, new_slots = optimizer.stateless_apply(self._values(scope, optimizer.variables), grads, values)
        self._assign(net.trainable_variables, new_values)
        self._assign(optimizer.variables, new_slots)

    def _jax_discriminator_step(self, scope, real, real_labels, z, fake_labels):
        import jax

        g, d = self.generator, self.discriminator
        fake, g_state = self._stateless(
            g, self._values(scope, g.trainable_variables), self._values(scope, g.non_trainable_variables), z, fake_labels
        )
        self._assign(g.non_trainable_variables, g_state)
        fake = jax.lax.stop_gradient(fake)
        d_state = self._values(scope, d.non_trainable_variables)

        def loss(d_values):
            real_out, new_d_state = self._stateless(d, d_values, d_state, real, real_labels)
            fake_out, new_d_state = self._stateless(d, d_values, new_d_state, fake, fake_labels)
            d_loss = self._jax_d_loss(d_values, d_state, real, fake, real_out, fake_out, real_labels)
            return self.d_optimizer.scale_loss(d_loss), (d_loss, new_d_state)

        d_values = self._values(scope, d.trainable_variables)
        (_, (d_loss, d_state)), d_grads = jax.value_and_grad(loss, has_aux=True)(d_values)
        self._apply(scope, self.d_optimizer, d, d_values, d_grads)
        self._assign(d.non_trainable_variables, d_state)
        return d_loss

    def _jax_generator_step(self, scope, batch):
        """The generator's step after every d_steps-th discriminator step, as a lax.cond on pure values."""
        import jax

        g, d = self.generator, self.discriminator
        z, fake_labels = _split_batch(self._fakes(batch))  # drawn at every step, used at every d_steps-th
        groups = (g.trainable_variables, g.non_trainable_variables, self.g_optimizer.variables,
                  d.non_trainable_variables)
        current = tuple(self._values(scope, variables) for variables in groups)
        d_values = self._values(scope, d.trainable_variables)

        def step(current):
            g_values, g_state, slots, d_state = current

            def loss(g_values):
                fake, new_g_state = self._stateless(g, g_values, g_state, z, fake_labels)
                out, new_d_state = self._stateless(d, d_values, d_state, fake, fake_labels)
                out, logits = _scores_and_logits(out)
                g_loss = generator_loss(out, self.loss_name) + self._class_term(logits, fake_labels)
                return self.g_optimizer.scale_loss(g_loss), (g_loss, new_g_state, new_d_state)

            (_, (g_loss, g_state, d_state)), grads = jax.value_and_grad(loss, has_aux=True)(g_values)
            g_values, slots = self.g_optimizer.stateless_apply(slots, grads, g_values)
            return (g_values, g_state, slots, d_state), ops.cast(g_loss, "float32"), ops.ones((), "float32")

        def skip(current):
            return current, ops.zeros((), "float32"), ops.zeros((), "float32")

        stepped = ops.equal(scope.get_current_value(self.d_optimizer.iterations) % self.d_steps, 0)
        new, g_loss, weight = jax.lax.cond(stepped, step, skip, current)
        for variables, values in zip(groups, new):
            self._assign(variables, values)
        self.g_loss_tracker.update_state(g_loss, sample_weight=weight * batch)


class _OptimizerPair:
    """Both optimizers seen as one by JAX's fit(), which carries `optimizer.variables` through the steps."""

    built = True

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def variables(self):
        return [v for optimizer in self.optimizers for v in optimizer.variables]


def _scores_and_logits(out):
    """A discriminator's output as (scores, class logits or None), both float32 whatever the precision inside."""
    if isinstance(out, (list, tuple)):
        return ops.cast(out[0], "float32"), ops.cast(out[1], "float32")
    return ops.cast(out, "float32"), None


def _split_batch(arrays):
    """With --devices all (a Keras distribution on JAX), split each array's first axis over the devices."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return arrays
    import jax

    return tuple(
        None if x is None else jax.lax.with_sharding_constraint(x, distribution.get_data_layout(x.shape).backend_layout)
        for x in arrays
    )


def _replica():
    """(this replica's number, how many) under TensorFlow's MirroredStrategy; (0, 1) everywhere else."""
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica code (outside the step)
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def multi_worker(gan):
    """True when `gan` trains under TensorFlow's MultiWorkerMirroredStrategy over more than one machine (process)."""
    return keras.backend.backend() == "tensorflow" and gan.distribute_strategy.extended._in_multi_worker_mode()


def _share(draw, shape, *args, **kwargs):
    """A random draw for this replica's share of the batch (`shape` is the share's).

    Every replica draws the whole batch from the same seed state and keeps its own rows, so the
    replicas together see exactly the numbers one device would.
    """
    replica, replicas = _replica()
    if replicas == 1:
        return draw(shape, *args, **kwargs)
    whole = draw((shape[0] * replicas, *shape[1:]), *args, **kwargs)
    return whole[replica * shape[0] : (replica + 1) * shape[0]]


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
