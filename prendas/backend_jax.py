"""The training step's JAX part: gradients from jax.vjp, stateless updates, and the jitted loop.

The step itself (prendas.gan) is written once, on variable values. Here it runs inside a
keras.StatelessScope over fit()'s state, so its reads and writes of variables are pure; one jitted
call runs `steps_per_execution` steps in a lax.scan with the state donated (Keras's own JAX loop
calls a jitted single step K times from Python).
"""

import jax
import keras
from keras import ops


def descend(losses, updates):
    """One optimizer step down each loss's gradient; returns (losses, aux).

    updates: [(optimizer, variables)] for each loss; losses(*values) -> ((loss, ...), aux) is called
    on the values of each variables list. One forward pass (jax.vjp), pulled back once per loss; under
    jit the parts of a pull that are not used (the discriminator's loss into the generator) are never
    computed. The updates are pure (stateless_apply), written back into the step's StatelessScope.
    """
    values = [[v.value for v in variables] for _, variables in updates]

    def scaled(*values):
        out, aux = losses(*values)
        return tuple(optimizer.scale_loss(loss) for (optimizer, _), loss in zip(updates, out)), (out, aux)

    scaled_out, pull, (out, aux) = jax.vjp(scaled, *values, has_aux=True)
    for i, (optimizer, variables) in enumerate(updates):
        grads = pull(tuple(ops.ones_like(x) if j == i else ops.zeros_like(x) for j, x in enumerate(scaled_out)))[i]
        new_values, slots = optimizer.stateless_apply([v.value for v in optimizer.variables], grads, values[i])
        for variable, value in zip([*variables, *optimizer.variables], [*new_values, *slots]):
            variable.assign(value)
    return out, aux


def with_input_gradient(function, inputs):
    """function(inputs) -> (scores, aux): ((scores, aux), the gradient of sum(scores) w.r.t. the inputs).

    From one forward pass (jax.vjp); the gradient is differentiable again (WGAN-GP's penalty, R1, R2).
    """
    scores, pull, aux = jax.vjp(function, inputs, has_aux=True)
    return (scores, aux), pull(ops.ones_like(scores))[0]


def when(condition, update, gan, otherwise=None):
    """Run update() where condition() holds, else otherwise() (if given), as a lax.cond on the values of the GAN's
    variables.

    The cond's branches are pure functions of those values (all an update may touch; the training
    images are left out: the update never reads them, and carrying them would copy them).
    """
    data = {id(v) for v in gan.data_variables()}
    variables = [v for group in state_variables(gan) for v in group if id(v) not in data]
    current = [v.value for v in variables]

    def branch(function):
        def run(current):
            if function is None:
                return current
            with keras.StatelessScope(state_mapping=list(zip(variables, current))) as scope:
                function()
                return [scope.get_current_value(v) for v in variables]

        return run

    new = jax.lax.cond(condition(), branch(update), branch(otherwise), current)
    for variable, value in zip(variables, new):
        variable.assign(value)


def state_variables(gan):
    """The variables behind JAX fit()'s state, in its four groups and order."""
    return (gan.trainable_variables, gan.non_trainable_variables, gan.optimizer.variables, gan.metrics_variables)


def make_train_function(gan):
    """fit()'s train function: (state, iterator of step numbers) -> (logs, state), K steps per jitted call.

    Only the first step number of a call is used, and never brought back to the host (no sync per call):
    a call's steps are consecutive within one epoch, so their numbers are made on the device.
    """
    groups = state_variables(gan)
    flat = [v for variables in groups for v in variables]

    def one_step(state, step):
        with keras.StatelessScope(state_mapping=list(zip(flat, [x for values in state for x in values]))) as scope:
            logs = gan.train_step(step)
            return tuple([scope.get_current_value(v) for v in variables] for variables in groups), logs

    def run_steps(state, first, count):
        steps = ops.reshape(first, (-1,))[0].astype("int32") + ops.arange(count, dtype="int32")
        state, logs = jax.lax.scan(one_step, state, steps)
        return jax.tree.map(lambda x: x[-1], logs), state

    shardings = None
    if keras.distribution.distribution() is not None:  # --devices all: the state stays where it is
        shardings = (None, tuple([v.value.sharding for v in variables] for variables in groups))
    run_steps = jax.jit(run_steps, donate_argnums=0, static_argnums=2, out_shardings=shardings)
    per_call = gan.steps_per_execution

    def train_function(state, iterator):
        items = [_first(data) for _, data in zip(range(per_call), iterator)]
        if not items:
            raise StopIteration
        return run_steps(state, items[0], len(items))

    return train_function


class OptimizerPair:
    """Both optimizers seen as one by JAX's fit(), which carries `optimizer.variables` through the steps."""

    built = True

    def __init__(self, *optimizers):
        self.optimizers = optimizers

    @property
    def variables(self):
        return [v for optimizer in self.optimizers for v in optimizer.variables]


def _first(data):
    return data[0] if isinstance(data, (tuple, list)) else data

