"""--devices all on TensorFlow (issue 6): MirroredStrategy over two logical CPU devices gives the result of
one device, its files load anywhere, and its checkpoints resume on one device. (The JAX backend's
DataParallel is tested in test_jax.py.) Each test runs in a fresh process: TensorFlow's devices are
configured before it starts."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from agreement import TOLERANCE, assert_weights_agree
from conftest import ROOT, run_cli

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)

TWO_CPUS = """
import sys
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from prendas import PrendasError
from prendas.config import TrainConfig
from prendas.train import resume, train
assert len(tf.config.list_logical_devices("CPU")) == 2

def quiet(line):
    pass

sys.path.insert(0, "tests")
from agreement import TOLERANCE, assert_weights_agree

def assert_same(a, b):
    assert_weights_agree(a.get_weights(), b.get_weights())
"""


def run_on_two_cpus(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND="tensorflow", TMP=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", TWO_CPUS + textwrap.dedent(code)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().endswith("ok"), result.stdout[-2000:]


def test_mirrored_strategy_gives_the_result_of_one_device(tmp_path):
    """Every path of the step (joint, critic steps with the generator every 2nd, the penalty, lazy R1/R2, labels, the
    moving average, synchronized BatchNorm): the weights and losses of one device (in float64: agreement.py)."""
    run_on_two_cpus("""
        import os, zipfile
        import keras
        lazy = {"loss": "rpgan", "r1": 0.1, "r2": 0.1, "reg_every": 2, "conditional": True, "class_loss": 1.0}
        for number, recipe in enumerate(({"loss": "hinge", "spectral_norm": True},
                                         {"loss": "wgan-gp", "d_steps": 2, "ema": 0.9, "conditional": True, "class_loss": 1.0},
                                         # the lazy penalties' two branches, and rpgan's generator reading the real images
                                         {**lazy, "ema": 0.9}, {**lazy, "d_steps": 2})):
            runs = {}
            for devices in ("1", "all"):
                config = TrainConfig(epochs=1, images=64, batch_size=16, seed=3, devices=devices, deterministic=True,
                                     precision="float64", out=f"{os.environ['TMP']}/{number}-{devices}", **recipe)
                runs[devices] = train(config, log=quiet)
            one, two = runs["1"], runs["all"]
            assert two.gan.distribute_strategy.num_replicas_in_sync == 2
            assert one.history[0]["g_loss"] != 0  # the generator stepped
            assert_same(one.gan.generator, two.gan.generator)
            assert_same(one.gan.discriminator, two.gan.discriminator)
            assert_same(one.gan.sampler, two.gan.sampler)
            for key in ("d_loss", "g_loss"):
                assert abs(one.history[0][key] - two.history[0][key]) <= TOLERANCE, (key, one.history[0], two.history[0])
            # The saved generators say nothing of the replicas (a synchronized BatchNorm loads on TensorFlow only).
            for name in ("generator", "generator_raw"):
                if name in two.paths:
                    assert b'"synchronized": true' not in zipfile.ZipFile(two.paths[name]).read("config.json")
                    keras.models.load_model(two.paths[name], compile=False)
        print("ok")
    """, tmp_path)


def test_a_mirrored_checkpoint_resumes_on_one_device_and_bad_settings_are_clear_errors(tmp_path):
    run_on_two_cpus("""
        import os
        out = os.environ["TMP"]
        common = dict(images=48, batch_size=16, seed=5, loss="hinge", deterministic=True, precision="float64")
        straight = train(TrainConfig(epochs=2, out=f"{out}/straight", **common), log=quiet)
        half = train(TrainConfig(epochs=1, devices="all", out=f"{out}/split", **common), log=quiet)
        rest = resume(half.paths["checkpoint"], 1, devices="1", log=quiet)
        assert rest.tag.endswith("_1+1ep_48imgs") and rest.config.devices == "1"
        assert_same(straight.gan.generator, rest.gan.generator)
        assert_same(straight.gan.discriminator, rest.gan.discriminator)
        for changes, message in (({"batch_size": 15}, "does not split evenly over 2 devices"),
                                 ({"steps_per_execution": 2}, "does not take --steps-per-execution above 1"),
                                 ({"xla": True}, "does not take --xla"),
                                 ({"precision": "mixed_float16"}, "does not take --precision mixed_float16")):
            target = f"{out}/bad"
            try:
                train(TrainConfig(**{**common, "epochs": 1, "devices": "all", "out": target, **changes}), log=quiet)
            except PrendasError as e:
                assert message in str(e), str(e)
            else:
                raise AssertionError(f"{changes} was accepted")
            assert not os.path.exists(target)
        print("ok")
    """, tmp_path)


def test_devices_all_from_the_command_line_on_one_cpu(tmp_path):
    """A machine with one device: --devices all trains there, as with one device (any option)."""
    result = run_cli("train", "--devices", "all", "--epochs", 1, "--images", 32, "--batch-size", 16, "--out", tmp_path,
                     "--steps-per-execution", 2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "models").glob("generator_*_1ep_32imgs.keras"))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # (two processes joined over TCP: deeper than the suite's other checks; CI runs it)
def test_two_machines_give_the_result_of_one_device_and_only_the_chief_writes(tmp_path):
    """Two processes on this machine stand for two machines: TF_CONFIG names them, each runs the same
    command (--devices all), MultiWorkerMirroredStrategy joins them. The chief's files are those of
    one device; the other worker writes nothing (its scratch folder is gone)."""
    import keras

    flags = ["train", "--epochs", 1, "--images", 64, "--batch-size", 16, "--seed", 3, "--deterministic",
             "--loss", "wgan-gp", "--d-steps", 2, "--ema", 0.9, "--conditional", "--precision", "float64"]
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    workers, logs = [], []
    try:
        for index in (0, 1):
            scratch = tmp_path / f"tmp{index}"
            scratch.mkdir()
            env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND="tensorflow", TMPDIR=str(scratch),
                       TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
            logs.append(open(tmp_path / f"worker{index}.log", "w+"))
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "prendas", *map(str, flags), "--devices", "all", "--out", tmp_path / f"worker{index}"],
                cwd=ROOT, env=env, stdout=logs[-1], stderr=subprocess.STDOUT, text=True))
        for worker in workers:
            worker.wait(timeout=600)
    finally:  # a worker left waiting for the other must not outlive the test
        for worker in workers:
            worker.kill()
    outputs = []
    for worker, log in zip(workers, logs):
        log.seek(0)
        outputs.append(log.read())
        log.close()
        assert worker.returncode == 0, outputs[-1][-3000:]
    assert "over 2 devices, writing to" in outputs[0]
    assert "writing nothing: the chief (worker 0, or the chief task) writes the files" in outputs[1]
    assert not (tmp_path / "worker1").exists() and not any((tmp_path / "tmp1").iterdir())

    one = run_cli(*flags, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    chief_record = json.loads(next((tmp_path / "worker0" / "models").glob("run_*.json")).read_text())
    one_record = json.loads(next((tmp_path / "one" / "models").glob("run_*.json")).read_text())
    assert chief_record["status"] == "complete" and chief_record["machine"]["machines"] == 2
    assert chief_record["machine"]["devices"] == 2 and one_record["machine"]["devices"] == 1
    for key in ("d_loss", "g_loss"):
        assert abs(chief_record["history"][0][key] - one_record["history"][0][key]) <= TOLERANCE
    for name in ("generator", "generator_raw", "discriminator"):
        chief, single = (keras.models.load_model(next((tmp_path / run / "models").glob(f"{name}_2*.keras")), compile=False)
                         for run in ("worker0", "one"))
        assert_weights_agree(chief.get_weights(), single.get_weights())


def test_tf_config_is_checked(tmp_path, monkeypatch, capsys):
    """A mistake in TF_CONFIG is one line before anything loads (in this process: the check comes first), and JAX
    refuses it (in a process of its own)."""
    from prendas.__main__ import main

    common = ["train", "--epochs", 1, "--images", 32, "--batch-size", 16, "--out", tmp_path / "out"]
    two = '{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}'
    cases = (("1", two, "TF_CONFIG is set (a run over several machines): add --devices all"),
             ("all", "{not json", "TF_CONFIG is not a JSON object"),
             ("all", "[]", "TF_CONFIG is not a JSON object"),
             ("all", '{"cluster": {"ps": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}',
              'TF_CONFIG\'s "cluster" must list "worker"'),
             ("all", two.replace('"index": 0', '"index": 2'), 'TF_CONFIG\'s "task" must name this machine'))
    for devices, tf_config, message in cases:
        monkeypatch.setenv("TF_CONFIG", tf_config)
        assert main([*map(str, common), "--devices", devices]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "out").exists()
    monkeypatch.setenv("TF_CONFIG", two)  # (each machine would stop by its own clock: the others would wait forever)
    assert main([*map(str, common), "--devices", "all", "--minutes", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--minutes is for one machine" in err and not (tmp_path / "out").exists()
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CONFIG=two, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-m", "prendas", *map(str, common), "--devices", "all"], cwd=ROOT,
                            env=env, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "TF_CONFIG is set (a run over several machines), which only the TensorFlow backend follows" in (
        result.stderr.splitlines()[-1])
    assert not (tmp_path / "out").exists()
