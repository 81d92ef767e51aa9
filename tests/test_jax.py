"""The JAX backend (issue 6): the same CLI, recipes and files with KERAS_BACKEND=jax, in a process where
TensorFlow cannot be imported (a GPU host with JAX and CUDA but no TensorFlow), and the generator it
saves loads on TensorFlow. (XLA on the CPU is slow at the generator's gradients: tiny runs only.)"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import ROOT, run_cli

from prendas.sampling import generate_images, latent_batch

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)

pytest.importorskip("jax", reason="the JAX backend needs jax: pip install -r requirements-dev.txt")

# float64 on JAX (the agreement tests') needs JAX's 64-bit arrays on from the start of the process.
X64 = {"JAX_ENABLE_X64": "1"}

# Run Python with KERAS_BACKEND=jax and `import tensorflow` made to fail, as where it is not installed.
NO_TENSORFLOW = "import sys; sys.modules['tensorflow'] = None\n"


def run_without_tensorflow(code, timeout=900, extra_env=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", **(extra_env or {}))
    return subprocess.run([sys.executable, "-c", NO_TENSORFLOW + textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cli_without_tensorflow(*args):
    return run_without_tensorflow(f"""
        import runpy
        sys.argv = ["prendas", *{[str(a) for a in args]!r}]
        runpy.run_module("prendas", run_name="__main__")
    """)


def test_jax_trains_and_resumes_from_the_cli_without_tensorflow_and_tensorflow_loads_the_generator(tmp_path):
    result = cli_without_tensorflow("train", "--epochs", 2, "--images", 40, "--batch-size", 16, "--out", tmp_path,
                                    "--steps-per-execution", 2)
    assert result.returncode == 0, result.stderr
    assert "3 steps of 16 images" in result.stdout  # 40 images: the last step wraps around to fill its batch
    [record] = (tmp_path / "models").glob("run_*_2ep_40imgs.json")
    run = json.loads(record.read_text())
    assert run["machine"]["backend"] == "jax" and run["epochs_done"] == 2
    assert all(np.isfinite(h["d_loss"]) and np.isfinite(h["g_loss"]) for h in run["history"])
    [checkpoint] = (tmp_path / "checkpoints").glob("checkpoint_*_2ep_*.npz")
    resumed = cli_without_tensorflow("train", "--resume", checkpoint, "--epochs", 1)
    assert resumed.returncode == 0, resumed.stderr
    [generator] = (tmp_path / "models").glob("generator_*_2+1ep_40imgs.keras")
    # This test process runs TensorFlow: the file JAX wrote loads and draws garments here.
    model = keras.models.load_model(generator, compile=False)
    images = generate_images(model, latent_batch(4, 100, seed=0))
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8 and images.std() > 0
    # and TensorFlow continues the checkpoint JAX wrote
    [checkpoint] = (tmp_path / "checkpoints").glob("checkpoint_*_2+1ep_*.npz")
    on_tensorflow = run_cli("train", "--resume", checkpoint, "--epochs", 1)
    assert on_tensorflow.returncode == 0, on_tensorflow.stderr
    assert list((tmp_path / "models").glob("generator_*_2+1+1ep_40imgs.keras"))


def test_several_steps_per_call_train_exactly_as_one_and_16_bit_precisions_train():
    """What only JAX's own loop does: K steps in one jitted call (a lax.scan), and the precisions' casts and loss
    scale inside it. (Every recipe's step on JAX is test_backends_agree's: the same steps as TensorFlow's.)"""
    result = run_without_tensorflow("""
        import numpy as np
        from prendas.config import TrainConfig
        from prendas.train import train
        sys.path.insert(0, "tests")
        from agreement import assert_weights_agree

        def fit(tag, images=48, batch_size=16, **settings):
            config = TrainConfig(epochs=1, images=images, batch_size=batch_size, seed=3,
                                 out=f"/tmp/prendas-jax-test/{tag}", **settings)
            return train(config, log=lambda line: None)

        # the same run, one step per call and three steps per call: the same weights (in float64: agreement.py)
        one, three = fit("k1", precision="float64"), fit("k3", steps_per_execution=3, precision="float64")
        assert int(three.gan.d_optimizer.iterations) == 3
        assert_weights_agree(one.gan.generator.get_weights(), three.gan.generator.get_weights())
        h = fit("bf16", images=8, batch_size=4, precision="mixed_bfloat16", loss="hinge", ema=0.99, conditional=True,
                class_loss=1.0)
        assert int(h.gan.d_optimizer.iterations) == 2
        # float16 with a dynamic loss scale: steps whose gradients overflow are skipped, not applied
        f = fit("fp16", images=8, batch_size=4, precision="mixed_float16", loss="wgan-gp", d_steps=2)
        assert 0 < int(f.gan.d_optimizer.iterations) <= 2
        # --precision auto (--preset best's): decided by the process that builds the step, as on TensorFlow; the
        # run keeps "auto" and records what it ran
        from prendas.precision import resolve_precision
        a = fit("auto", images=8, batch_size=4, precision="auto")
        assert a.config.precision == "auto" and a.gan.generator.dtype_policy.name == resolve_precision("auto")
        assert a.record("complete")["machine"]["precision"] == resolve_precision("auto")
        # a float32 run after the float64 ones: what a fresh process trains (the float64 runs changed nothing)
        after = fit("after", precision="float32")
        np.savez("/tmp/prendas-jax-test/after.npz", *after.gan.generator.get_weights())
        for run in (h, f):
            assert all(np.isfinite(x).all() for x in run.gan.generator.get_weights())
            assert np.isfinite(run.history[-1]["d_loss"]) and np.isfinite(run.history[-1]["g_loss"])
        # the moving average moved away from the raw weights it started from
        moved = [np.abs(a - b).max() for a, b in zip(h.gan.ema_generator.get_weights(), h.gan.generator.get_weights())]
        assert max(moved) > 0
        print("ok")
    """, extra_env=X64)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
    fresh = run_without_tensorflow("""
        import numpy as np
        from prendas.config import TrainConfig
        from prendas.train import train
        run = train(TrainConfig(epochs=1, images=48, batch_size=16, seed=3, out="/tmp/prendas-jax-test/fresh"),
                    log=lambda line: None)
        with np.load("/tmp/prendas-jax-test/after.npz") as after:
            assert [w.tobytes() for w in run.gan.generator.get_weights()] == [after[k].tobytes() for k in after.files]
        print("ok")
    """, extra_env=X64)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert fresh.stdout.strip().endswith("ok")


def test_float64_on_jax_asks_for_64_bit_arrays_from_the_start(tmp_path):
    """Turned on by a run, JAX's 64-bit arrays would change every later computation of the process: without them,
    --precision float64 is one line, before anything trains or is written."""
    result = cli_without_tensorflow("train", "--precision", "float64", "--epochs", 1, "--images", 16, "--batch-size", 16,
                                    "--out", tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert "JAX_ENABLE_X64=1" in result.stderr
    assert not list(tmp_path.rglob("*.*"))


def test_devices_all_splits_each_batch_over_two_devices_with_the_result_of_one():
    """--devices all on two (simulated) CPU devices: the same run as on one device."""
    result = run_without_tensorflow("""
        import jax
        import numpy as np
        from prendas import PrendasError
        sys.path.insert(0, "tests")
        from agreement import TOLERANCE, assert_weights_agree
        from prendas.config import TrainConfig
        from prendas.train import train

        assert len(jax.devices()) == 2
        runs = {}
        for devices in ("1", "all"):
            config = TrainConfig(epochs=1, images=48, batch_size=16, seed=4, steps_per_execution=3, devices=devices,
                                 precision="float64", out=f"/tmp/prendas-jax-devices/{devices}")
            runs[devices] = train(config, log=lambda line: None)
        kernel = runs["all"].gan.generator.trainable_variables[0].value
        assert len(kernel.sharding.device_set) == 2  # the weights live on both devices
        # (in float64, where rounding cannot decide it: agreement.py)
        assert_weights_agree(runs["1"].gan.generator.get_weights(), runs["all"].gan.generator.get_weights())
        assert_weights_agree(runs["1"].gan.discriminator.get_weights(), runs["all"].gan.discriminator.get_weights())
        assert abs(runs["1"].history[0]["d_loss"] - runs["all"].history[0]["d_loss"]) <= TOLERANCE
        try:
            train(TrainConfig(epochs=1, images=48, batch_size=15, devices="all", out="/tmp/prendas-jax-devices/x"))
        except PrendasError as e:
            assert "does not split evenly over 2 devices" in str(e)
        else:
            raise AssertionError("an uneven split was accepted")
        print("ok")
    """, extra_env={"XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2", **X64})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
