import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = Path("/usr/share/datasets/fashion-mnist")

# Quiet TensorFlow's C++ start-up lines in every process the tests start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("TF_CONFIG", None)  # a developer's multi-machine setting would turn every run into one
# The evaluation's cache (the floor's scores) goes to a folder of this test session, not the user's.
os.environ["PRENDAS_CACHE"] = tempfile.mkdtemp(prefix="prendas-test-cache-")
atexit.register(shutil.rmtree, os.environ["PRENDAS_CACHE"], ignore_errors=True)
# JAX compiles the same steps in several of the tests' processes: its compilation cache, in a folder of this
# test session, compiles each once (seen on 2 cores: test_jax.py 104 s -> 52 s once the cache holds them).
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(os.environ["PRENDAS_CACHE"], "jax")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


@pytest.fixture(scope="session")
def real_data_dir():
    """The real Fashion-MNIST files: .ci/run installs them with `apt-get install dataset-fashion-mnist`."""
    if not (REAL_DATA / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST is missing from {REAL_DATA}: apt-get install dataset-fashion-mnist")
    return REAL_DATA


@pytest.fixture
def data_copy(tmp_path, real_data_dir):
    """A private copy of the four files, safe to corrupt."""
    folder = tmp_path / "fashion"
    shutil.copytree(real_data_dir, folder)
    return folder


def run_cli(*args, cwd=None, timeout=600):
    """Run `python -m prendas ARGS` in a fresh process, as a user would."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "prendas", *map(str, args)],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
