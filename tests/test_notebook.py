"""gan_prendas.ipynb: committed clean, parameterised papermill-style, and run end to end headless."""

import contextlib
import json
import os
import re

import nbformat
import pytest
from conftest import ROOT

from prendas import notebook

NOTEBOOK = ROOT / "gan_prendas.ipynb"
PARAMETERS = ["EPOCHS", "MINUTES", "BATCH_SIZE", "IMAGES", "LATENT_DIM", "SEED", "BEST_MINUTES", "BEST_EPOCHS", "BEST_IMAGES",
              "RESUME_FROM", "TENSORBOARD"]


def _code_cells():
    return [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]


def test_committed_without_outputs():
    nbformat.validate(nbformat.read(NOTEBOOK, as_version=4))
    dirty = [i for i, c in enumerate(_code_cells()) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"code cells {dirty} have outputs or execution counts: clear them before committing"


def test_first_code_cell_holds_exactly_the_parameters():
    first = _code_cells()[0]
    assert "parameters" in first["metadata"].get("tags", [])
    names = re.findall(r"^([A-Z_]+) = ", "".join(first["source"]), re.M)
    assert names == PARAMETERS


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run All, headless, with tiny parameters, in a fresh folder (papermill, the project's kernel)."""
    import papermill

    out = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(ROOT))
        mp.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(out / "executed.ipynb"),
            # (epochs, not minutes, end the tiny runs: a test is never timed)
            parameters={"EPOCHS": 1, "IMAGES": 256, "BATCH_SIZE": 64, "BEST_EPOCHS": 1, "BEST_IMAGES": 256},
            cwd=str(out),
            progress_bar=False,
        )
    yield out
    # The notebook's %tensorboard started a TensorBoard server on these logs; it outlives the kernel.
    import signal

    from tensorboard import manager

    for info in manager.get_all():  # (TensorBoard servers started in this notebook's folder, not a user's)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{info.pid}/cwd") == str(out):
                os.kill(info.pid, signal.SIGTERM)


def _tags(folder, pattern):
    return sorted(
        p.stem.removeprefix("grid_")
        for p in (folder / "images").glob("grid_*.png")
        if re.fullmatch(r"\d{4}-\d\d-\d\d-\d{4}_" + pattern, p.stem.removeprefix("grid_"))
    )


def test_run_all_writes_the_tagged_files(executed):
    [tag] = _tags(executed, r"1ep_256imgs")
    [resumed] = _tags(executed, r"1\+1ep_256imgs")  # the "continue training" cell
    for t in (tag, resumed):
        for name in (f"models/generator_{t}.keras", f"models/run_{t}.json", f"images/progress_{t}.gif",
                     f"images/image_4_{t}.png", f"checkpoints/checkpoint_{t}.npz"):
            assert (executed / name).is_file(), name
    nb = nbformat.read(executed / "executed.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = " ".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert '<progress value="1.000" max="1"' in html  # the live progress bar reached the end
    assert html.count("data:image/gif;base64") == 1  # the progress animation is shown
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    # real garments per class, live training figures, the generated grid, the walk between two garments,
    # the conditional GAN's live figures, its ten rows (one per class) and its two class morphs
    assert len(pngs) >= 8
    # The three garment explorers (the shipped generator, the run, the conditional run) are widgets.
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 3
    assert "tensorboard-frame" in html  # %tensorboard showed TensorBoard inline
    from test_tensorboard import read_log

    scalars, images, _ = read_log(executed / "logs" / tag)  # the run logged for it, and section 6 continued it
    assert [s for s, _ in scalars["epoch/d_loss"]] == [4, 8] == [s for s, _, _ in images["samples/fixed_noise"]]
    # (the best recipe keeps a moving average: generator_TAG is it, generator_raw_TAG beside it)
    [conditional] = (executed / "conditional" / "models").glob("generator_2*_1ep_256imgs.keras")
    [conditional_log] = (executed / "conditional" / "logs").iterdir()  # shown in the same TensorBoard
    assert [s for s, _ in read_log(conditional_log)[0]["epoch/g_loss"]] == [4]
    config = json.loads(conditional.with_name(conditional.name.replace("generator_", "run_")).with_suffix(".json")
                        .read_text())["config"]
    from prendas.config import TrainConfig

    # section 8 trains --preset best for BEST_MINUTES (at most BEST_EPOCHS), its precision decided by this machine
    assert config == {**TrainConfig.preset("best", epochs=1, minutes=10, images=256, batch_size=64, seed=0,
                                           out="conditional").to_dict(), "tensorboard": config["tensorboard"]}
    assert config["precision"] == "auto" and config["conditional"] is True
    assert re.search(r"_1ep_256imgs: 1 epoch in \dm\d\ds at [\d,]+ images/s, computing in (float32|mixed_bfloat16)\n",
                     " ".join(str(o.get("text", "")) for o in outputs))
    assert "class asked = class seen" in " ".join(str(o.get("text", "")) for o in outputs)  # its evaluation


def test_resume_from_parameter_continues_a_run(tmp_path, monkeypatch):
    """RESUME_FROM: the training cell continues the checkpoint it names by EPOCHS, in the notebook's folder.

    That cell's code run alone, as Run All would run it (everything after it is the same either way, and the
    notebook's Run All above covers it): the notebook runs once in the tests.
    """
    import keras

    from prendas.config import TrainConfig
    from prendas.train import train

    first = train(TrainConfig(epochs=1, images=64, batch_size=32, out=str(tmp_path)), log=lambda line: None)
    [cell] = [c for c in _code_cells() if "RESUME_FROM is None" in "".join(c["source"])]
    monkeypatch.chdir(tmp_path)
    checkpoint = first.paths["checkpoint"].relative_to(tmp_path)
    namespace = {"EPOCHS": 1, "MINUTES": 0, "BATCH_SIZE": 16, "IMAGES": 32, "LATENT_DIM": 8, "SEED": 1, "TENSORBOARD": False,
                 "RESUME_FROM": str(checkpoint), "NotebookMonitor": keras.callbacks.Callback}  # (no kernel to show it)
    exec("".join(cell["source"]), namespace)  # (the other parameters are the checkpoint's)
    run = namespace["run"]
    assert run.tag.endswith("_1+1ep_64imgs") and run.resumed_from == str(checkpoint)
    assert run.config.batch_size == 32 and run.config.out == "." and (tmp_path / "models" / f"run_{run.tag}.json").is_file()


def test_environment_report_warns_when_a_gpu_is_unused(monkeypatch):
    monkeypatch.setattr(notebook.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    report = notebook.environment_report()
    assert "TensorFlow 2.21" in report and "Keras 3" in report
    assert "WARNING" in report and "62412" in report and "81344" in report
    monkeypatch.setattr(notebook.shutil, "which", lambda name: None)
    monkeypatch.setattr(notebook.Path, "exists", lambda self: False)
    assert "No GPU" in notebook.environment_report()
