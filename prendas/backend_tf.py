"""The training step's TensorFlow part: gradients from tf.GradientTape, updates by the optimizers.

The step itself (prendas.gan) is written once, on variable values; this module is only how its
gradients are taken and applied, and how the generator's step is skipped between critic steps.
fit() traces GAN.train_step into a tf.function (XLA with --xla).
"""

import contextlib

import tensorflow as tf

from prendas import devices


def descend(losses, updates):
    """One optimizer step down each loss's gradient; returns (losses, aux).

    updates: [(optimizer, variables)] for each loss; losses(*values) -> ((loss, ...), aux) is called
    on the values of each variables list. One tape per loss, over the same forward pass; each loss is
    scaled for its optimizer (float16's loss scale) and divided by the replicas, whose gradients the
    optimizer sums.
    """
    values = [[v.value for v in variables] for _, variables in updates]
    tapes = [tf.GradientTape() for _ in updates]
    with contextlib.ExitStack() as stack:
        for tape, watched in zip(tapes, values):
            stack.enter_context(tape).watch(watched)
        out, aux = losses(*values)
        scaled = [optimizer.scale_loss(loss / devices.replica()[1]) for (optimizer, _), loss in zip(updates, out)]
    for (optimizer, variables), tape, loss, watched in zip(updates, tapes, scaled, values):
        # An embedding's gradient comes as IndexedSlices, one slice per label in the batch. Keras's Adam
        # squares it slice by slice, before the slices of a repeated label are summed, so its second moment
        # is not the gradient's square (measured: 1.7e-4 instead of 3.0e-4); made dense it is, as on JAX.
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in tape.gradient(loss, watched)]
        optimizer.apply_gradients(zip(grads, variables))
    return out, aux


def with_input_gradient(function, inputs):
    """function(inputs) -> (scores, aux): ((scores, aux), the gradient of sum(scores) w.r.t. the inputs).

    Inside an outer tape the gradient is differentiable again (WGAN-GP's penalty, R1, R2).
    """
    inputs = tf.convert_to_tensor(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        scores, aux = function(inputs)
        total = tf.reduce_sum(scores)
    return (scores, aux), tape.gradient(total, inputs)


def when(condition, update, gan, otherwise=None):
    """Run update() where condition() holds, else otherwise() (if given), as a tf.cond.

    Under MirroredStrategy the update synchronizes the replicas (gradients, batch statistics), which
    a cond inside one replica may not do: there the cond is taken across the replicas and runs the
    update on each of them, from the first replica's closure: a per-replica value the update needs (its share of
    the images) is computed inside it, not captured (GAN.train_step's batch()).
    """

    def branch(function):
        def run():
            if function is not None:
                function()
            return tf.constant(0.0)

        return run

    if devices.replica()[1] == 1:
        tf.cond(condition(), branch(update), branch(otherwise))
        return

    def across(strategy):
        def on_each(function):
            def run():
                if function is not None:
                    strategy.extended.call_for_each_replica(function)
                return tf.constant(0.0)

            return run

        return tf.cond(condition(), on_each(update), on_each(otherwise))

    tf.distribute.get_replica_context().merge_call(across)
