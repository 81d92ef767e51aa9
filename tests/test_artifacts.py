import datetime
import json

import numpy as np
import pytest

from prendas import PrendasError, artifacts, sampling
from prendas.models import build_discriminator, build_generator

WHEN = datetime.datetime(2025, 2, 11, 15, 30)


def test_run_tag_reads_like_the_original_runs():
    assert artifacts.run_tag([50], 70_000, WHEN) == "2025-02-11-1530_50ep_70000imgs"
    assert artifacts.run_tag([50, 175], 70_000, WHEN) == "2025-02-11-1530_50+175ep_70000imgs"


def test_same_minute_runs_get_distinct_tags(tmp_path):
    tag = artifacts.run_tag([2], 300, WHEN)
    (tmp_path / "logs" / artifacts.run_tag([3], 300, WHEN)).mkdir(parents=True)  # (a run --minutes tagged anew logs there)
    assert artifacts.claim_tag(tmp_path, artifacts.run_tag([3], 300, WHEN)).endswith("_3ep_300imgs_2")
    assert artifacts.claim_tag(tmp_path, tag) == tag
    artifacts.write_json(artifacts.run_paths(tmp_path, tag)["run_json"], {})
    assert artifacts.claim_tag(tmp_path, tag) == tag + "_2"


def test_run_paths_name_every_file():
    paths = artifacts.run_paths("out", "T")
    assert str(paths["generator"]) == "out/models/generator_T.keras"
    assert str(paths["discriminator"]) == "out/models/discriminator_T.keras"
    assert str(paths["grid"]) == "out/images/grid_T.png"
    assert [str(paths[f"image_{i}"]) for i in range(5)] == [f"out/images/image_{i}_T.png" for i in range(5)]
    assert str(paths["checkpoint"]) == "out/checkpoints/checkpoint_T.npz"


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "run.json"
    artifacts.write_json(path, {"epoch": 1})
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(path) as tmp:
            tmp.write_text('{"epoch": ')  # half written when the process "dies"
            raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary left behind


def test_checkpoint_round_trip(tmp_path):
    gen = build_generator(4)
    state = {"generator": gen.variables}
    frames = np.zeros((3, 10, 10), np.uint8)
    path = tmp_path / "c.npz"
    meta = {"format": artifacts.CHECKPOINT_FORMAT, "version": 1, "x": [1], **{k: 0 for k in artifacts.CHECKPOINT_KEYS}}
    artifacts.save_checkpoint(path, state, meta, frames)
    meta, loaded_frames, saved = artifacts.load_checkpoint(path)
    assert meta["x"] == [1] and loaded_frames.shape == (3, 10, 10)
    fresh = build_generator(4)
    artifacts.restore_variables({"generator": fresh.variables}, saved, path)
    assert all(np.array_equal(a, b) for a, b in zip(gen.get_weights(), fresh.get_weights()))
    with pytest.raises(PrendasError, match="does not match"):
        artifacts.restore_variables({"generator": build_generator(5).variables}, saved, path)


@pytest.mark.parametrize("content", [b"", b"not a zip", None])
def test_bad_checkpoints_are_refused(tmp_path, content):
    path = tmp_path / "c.npz"
    if content is None:  # a real checkpoint cut short
        artifacts.save_checkpoint(path, {"g": build_generator(4).variables}, {"format": "prendas-checkpoint", "version": 1}, [])
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.write_bytes(content)
    with pytest.raises(PrendasError, match="not a readable prendas checkpoint"):
        artifacts.load_checkpoint(path)


def test_incomplete_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    artifacts.save_checkpoint(path, {}, {"format": artifacts.CHECKPOINT_FORMAT, "version": 1, "config": {}}, [])
    with pytest.raises(PrendasError, match="incomplete prendas checkpoint .no epochs_done, history, segments"):
        artifacts.load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(PrendasError, match="no checkpoint"):
        artifacts.load_checkpoint(tmp_path / "nope.npz")


def test_load_generator_checks_what_it_loads(tmp_path):
    gen_path, disc_path = tmp_path / "g.keras", tmp_path / "d.keras"
    artifacts.save_model(build_generator(12), gen_path)
    artifacts.save_model(build_discriminator(), disc_path)
    assert sampling.load_generator(gen_path).input_shape == (None, 12)
    with pytest.raises(PrendasError, match="not a generator"):
        sampling.load_generator(disc_path)
    with pytest.raises(PrendasError, match="size 12, not 100"):
        sampling.load_generator(gen_path, latent_dim=100)
    (tmp_path / "junk.keras").write_bytes(b"junk")
    with pytest.raises(PrendasError, match="not a .keras model file"):
        sampling.load_generator(tmp_path / "junk.keras")


def test_what_a_run_saves_computes_in_float32_and_draws_in_the_precision_asked(tmp_path):
    """Precision belongs to a run, not to its files (issue 33): a generator built in bfloat16 (a --precision auto run
    where the hardware has it) is saved computing in float32, its weights bit for bit; loading draws in float32 unless
    bfloat16 is asked for; a file saved the old way (its layers in mixed_bfloat16) loads in float32 too."""
    import zipfile

    import keras

    from prendas.models import computes_in
    from prendas.precision import resolve_precision
    from prendas.run import save_network

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        trained = build_generator(12, conditional=True, width=8)
    finally:
        keras.config.set_dtype_policy("float32")
    weights = [w.tobytes() for w in trained.get_weights()]
    assert computes_in(trained) == ["mixed_bfloat16"]
    save_network(trained, tmp_path / "g.keras")
    assert b"mixed_bfloat16" not in zipfile.ZipFile(tmp_path / "g.keras").read("config.json")
    artifacts.save_model(trained, tmp_path / "old.keras")  # (as runs saved it before 2026-12-08)
    assert b"mixed_bfloat16" in zipfile.ZipFile(tmp_path / "old.keras").read("config.json")
    for name in ("g.keras", "old.keras"):
        for precision, computes in ((None, "float32"), ("float32", "float32"), ("mixed_bfloat16", "mixed_bfloat16"),
                                    ("auto", resolve_precision("auto"))):
            loaded = sampling.load_generator(tmp_path / name, precision=precision)
            assert computes_in(loaded) == [computes] and [w.tobytes() for w in loaded.get_weights()] == weights
    with pytest.raises(PrendasError, match="precision must be one of float32, .*, got 'float8'"):
        sampling.load_generator(tmp_path / "g.keras", precision="float8")


def test_image_grid_layout():
    images = np.full((5, 28, 28), 7, np.uint8)
    grid = artifacts.image_grid(images, cols=3, pad=2, scale=1)
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)
    assert (grid == 7).sum() == 5 * 28 * 28
