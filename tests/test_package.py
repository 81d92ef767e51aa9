"""The installable package: the wheel `python -m build` makes, installed in a fresh virtual environment
outside the repository, trains a tiny run, draws garments and scores them with the feature network it carries."""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


def test_the_license_pyproject_names_exists():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    for name in project["license-files"]:
        text = (ROOT / name).read_text()
        assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_the_command_line_picks_jax_when_tensorflow_is_absent(monkeypatch):
    import importlib.util

    from prendas import PrendasError
    from prendas.__main__ import choose_backend

    installed = {"jax"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    # Empty counts as unset; monkeypatch puts back what was there before (a delenv of an unset variable would
    # record nothing, and the "jax" set below would leak into every later test's subprocesses).
    monkeypatch.setenv("KERAS_BACKEND", "")
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # (restored afterwards)
    choose_backend()
    assert os.environ["KERAS_BACKEND"] == "jax"
    os.environ["KERAS_BACKEND"] = ""
    installed.clear()
    with pytest.raises(PrendasError, match=r'pip install "prendas\[tensorflow\]"'):
        choose_backend()
    assert os.environ["KERAS_BACKEND"] == ""
    installed.add("tensorflow")
    choose_backend()  # Keras's default, TensorFlow
    assert os.environ["KERAS_BACKEND"] == ""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel, built from a copy of what it is made of (the build writes build/ and *.egg-info beside it)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "prendas", source / "prendas", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (setuptools, pinned in requirements-dev.txt) comes from this environment
    # rather than a download.
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--no-isolation", "--outdir", str(dist)],
                          cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (found,) = dist.glob("prendas-*.whl")
    (source_archive,) = dist.glob("prendas-*.tar.gz")
    import tarfile

    names = {n.split("/", 1)[1] for n in tarfile.open(source_archive).getnames() if "/" in n}
    assert {"LICENSE", "pyproject.toml", "prendas/fashion_classifier.keras", "prendas/__main__.py"} <= names
    return found


def test_the_wheel_carries_the_package_the_feature_network_and_the_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("prendas/__main__.py", "prendas/gan.py", "prendas/fashion_classifier.keras",
                   "prendas/fashion_classifier.json"):
        assert needed in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "prendas = prendas.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert not any(n.startswith(("tests/", "models/", "images/")) for n in names)


@pytest.mark.slow  # (a fresh virtual environment: deeper than the suite's other checks; CI runs it)
def test_the_wheel_installed_in_a_fresh_environment_trains_generates_and_evaluates(wheel, tmp_path, real_data_dir):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The wheel goes in with pip (run from here, aimed at the new environment); its dependencies (TensorFlow is
    # gigabytes) are this environment's, seen through a .pth file, behind the new environment's own packages.
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                           "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if "site-packages" in p] or [sysconfig.get_paths()["purelib"]]
    Path(purelib, "dependencies.pth").write_text("\n".join(ours) + "\n")
    work = tmp_path / "elsewhere"  # not the repository: nothing of it on the path
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def prendas(*args):
        done = subprocess.run([str(venv / "bin" / "prendas"), *map(str, args)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    where = subprocess.run([str(python), "-c", "import prendas.features as f; print(f.__file__, f.WEIGHTS)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    # Every dependency the wheel declares is there, in a version it accepts.
    check = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    prendas("train", "--epochs", 1, "--images", 256, "--batch-size", 64, "--conditional", "--out", "run")
    (generator,) = (work / "run" / "models").glob("generator_2*.keras")
    assert "wrote 10 Sneaker images" in prendas("generate", "--model", generator, "--class", "sneaker", "--n", 10,
                                                 "--out", "sneakers.png")
    assert (work / "sneakers.png").stat().st_size > 0
    prendas("evaluate", "--model", generator, "--n", 100, "--json", "scores.json")
    import json

    scores = json.loads((work / "scores.json").read_text())
    assert 0 <= scores["metrics"]["precision"] <= 1 and scores["metrics"]["fid"] > 0
