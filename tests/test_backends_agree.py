"""The training step is written once (prendas.gan) and only its gradients are backend code: TensorFlow and
JAX, from the same weights, batch and noise, take the same steps.

Each backend runs in a process of its own (Keras picks its backend at import). The TensorFlow process
builds each recipe's GAN, saves its weights, and takes two steps; the JAX process loads those weights
and takes the same two steps. The noise is made the same on both: the backends' random generators
differ (Philox and Threefry), so the test hands both the same table of noise, looked up by the step
number, and turns the tutorial discriminator's dropout off (its masks come from those generators too).
Both compute in float64, where rounding cannot decide whether they agree (tests/agreement.py). Two differences
are not rounding and are taken out: TensorFlow's LeakyReLU kernel holds its slope as a float32 attribute (0.3
becomes 0.30000001), and Keras on TensorFlow makes a Python number float32 before casting it to float64 (Adam's
betas and epsilon: 0.999 becomes 0.99900001), where JAX keeps the float64 number. So the test rounds the layers'
slope, and Adam's betas and epsilon, to numbers float32 holds exactly, on both sides.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from agreement import TOLERANCE, assert_weights_agree
from conftest import ROOT

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)

pytest.importorskip("jax", reason="the JAX backend needs jax: pip install -r requirements-dev.txt")

RECIPES = {
    # the tutorial's (its discriminator's dropout off: see above)
    "bce": {},
    # two critic steps, then the generator's (after the second): the penalty, labels and the classifier
    "wgan-gp+cond+ac": {"loss": "wgan-gp", "d_steps": 2, "conditional": True, "class_loss": 1.0},
    # --preset best's pieces: R3GAN's loss with R1 and R2 (each a gradient at the images inside the step), spectral
    # norm, the moving average, labels and the classifier; the penalties every second step (one step with, one without);
    # networks of half the tutorial's width
    "rpgan+r1+r2+sn+ema+cond+ac+reg2+w16": {"loss": "rpgan", "r1": 0.1, "r2": 0.1, "spectral_norm": True, "ema": 0.999,
                                            "conditional": True, "class_loss": 1.0, "g_lr": 2e-4, "d_lr": 2e-4,
                                            "reg_every": 2, "width": 16},
    # DiffAugment on what the discriminator sees (the generator learns through it), R1/R2 on their schedule, the
    # half-life average, the hinge loss
    "hinge+augment+gamma-schedule+ema-kimg": {"loss": "hinge", "r1": 0.1, "r2": 0.1, "gamma_kimg": 1.0,
                                              "augment": "translation,cutout", "ema_kimg": 0.5},
}
STEPS = 2

SCRIPT = r"""
import contextlib, json, sys
import keras
import numpy as np
from keras import ops
from prendas import devices
from prendas.config import TrainConfig
from prendas.data import load_fashion_mnist, select_images
from prendas.train import build_gan, keeping_float64

folder, recipes, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
# The whole script computes in float64 (on JAX: Keras's promotion keeps float64 until the process ends).
float64 = contextlib.ExitStack()
float64.enter_context(keeping_float64("float64"))


def save(path, gan, **extra):
    groups = gan.state_variables()
    np.savez(path, **{f"{g}/{i}": np.asarray(v) for g, vs in groups.items() for i, v in enumerate(vs)}, **extra)


def restore(path, gan):
    with np.load(path) as npz:
        for group, variables in gan.state_variables().items():
            for i, variable in enumerate(variables):
                variable.assign(npz[f"{group}/{i}"])


backend = keras.backend.backend()
images, labels, _ = select_images(load_fashion_mnist(), 64, seed=5)
for name, settings in recipes.items():
    config = TrainConfig(images=64, batch_size=16, seed=5, precision="float64", **settings)
    gan = build_gan(config)
    for optimizer in (gan.d_optimizer, gan.g_optimizer):  # (numbers float32 holds exactly: see the docstring)
        optimizer.beta_1, optimizer.beta_2, optimizer.epsilon = (float(np.float32(x)) for x in (
            optimizer.beta_1, optimizer.beta_2, optimizer.epsilon))
    for layer in [*gan.discriminator._flatten_layers(), *gan.generator._flatten_layers()]:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
        if isinstance(layer, keras.layers.LeakyReLU):  # a slope both backends hold alike (see the docstring)
            layer.negative_slope = float(np.float32(layer.negative_slope))
    start = f"{folder}/{name}-start.npz"
    if backend == "tensorflow":  # the weights both start from
        save(start, gan)
    else:
        restore(start, gan)
    # The same noise on both backends: a table, indexed by the step number and the draw within the step.
    rng = np.random.default_rng(7)
    tables = {"z": rng.standard_normal((steps, 2, 16, gan.latent_dim)),
              "labels": rng.integers(0, 10, (steps, 2, 16, 1)).astype("int32"),
              "mix": rng.uniform(0, 1, (steps, 2, 16, 1, 1, 1)),
              "augment": rng.uniform(0, 1, (steps, 4, 16, 4))}
    now = {}
    take_batch = gan.take_batch

    def take(step):
        now.update(step=step, z=0, labels=0, mix=0, augment=0)  # (the draws within a step, counted as it is traced)
        return take_batch(step)

    def draw(name):
        now[name] += 1
        return ops.take(ops.convert_to_tensor(tables[name][:, now[name] - 1]), now["step"], axis=0)

    gan.take_batch = take
    gan.draw_fakes = lambda batch: (draw("z"), draw("labels") if gan.conditional else None)
    gan.draw_mix = lambda batch: draw("mix")
    gan.draw_augment = lambda batch: draw("augment")
    gan.attach_data(images, labels if gan.conditional else None, 16)
    gan.set_epoch_order(np.arange(64))
    gan.make_train_function()
    train_function = gan.train_function
    numbers = devices.step_numbers(steps, gan)
    losses = []
    if backend == "jax":
        from prendas.backend_jax import state_variables

        groups = state_variables(gan)
        state = tuple([ops.copy(v.value) for v in variables] for variables in groups)
        iterator = iter([numbers[i] for i in range(steps)])
        for _ in range(steps):
            logs, state = train_function(state, iterator)
            losses.append([float(logs["d_loss"]), float(logs["g_loss"])])
        for variables, values in zip(groups, state):
            for variable, value in zip(variables, values):
                variable.assign(value)
    else:
        iterator = iter(numbers)
        for _ in range(steps):
            logs = train_function(iterator)
            losses.append([float(logs["d_loss"]), float(logs["g_loss"])])
    save(f"{folder}/{name}-{backend}.npz", gan, losses=np.array(losses))
print("ok")
"""


def _run(backend, folder):
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(folder), json.dumps(RECIPES), str(STEPS)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


@pytest.fixture(scope="module")
def steps_on_both(tmp_path_factory):
    folder = tmp_path_factory.mktemp("agree")
    _run("tensorflow", folder)  # first: it writes the starting weights
    _run("jax", folder)
    return folder


@pytest.mark.parametrize("recipe", RECIPES)
def test_tensorflow_and_jax_take_the_same_steps(steps_on_both, recipe):
    def load(backend):
        with np.load(steps_on_both / f"{recipe}-{backend}.npz") as npz:
            return npz["losses"], {k: npz[k] for k in npz.files if "/" in k}

    tf_losses, tf_state = load("tensorflow")
    jax_losses, jax_state = load("jax")
    np.testing.assert_allclose(jax_losses, tf_losses, rtol=0, atol=TOLERANCE)
    assert sorted(tf_state) == sorted(jax_state)
    weights = sorted(k for k in tf_state if k.split("/")[0] in ("generator", "discriminator", "ema_generator"))
    slots = sorted(k for k in tf_state if k.split("/")[0] in ("g_optimizer", "d_optimizer"))
    start = dict(np.load(steps_on_both / f"{recipe}-start.npz"))
    # The steps moved the weights (a test that compared two untouched copies would pass for nothing)...
    moved = [k for k in weights if k.startswith("generator/") and not np.array_equal(tf_state[k], start[k])]
    assert moved, "the generator did not change"
    # ...and both backends moved them alike, and their optimizers' moments too: in float64 (agreement.py).
    floats = [k for k in weights + slots if tf_state[k].dtype == np.float64]
    assert len(floats) > len(weights)
    assert_weights_agree([tf_state[k] for k in floats], [jax_state[k] for k in floats])
    rest = [k for k in weights + slots if k not in floats]  # step counters, seeds, the learning rates (float32)
    assert [k for k in rest if not np.array_equal(tf_state[k], jax_state[k])] == []
