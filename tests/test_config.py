import json

import pytest

from prendas import PrendasError
from prendas.config import TrainConfig


def test_defaults_are_the_tutorials():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.images, c.latent_dim, c.g_lr, c.d_lr) == (50, 256, 60_000, 100, 1e-4, 1e-4)
    assert not c.uses_test_images and TrainConfig(images=70_000).uses_test_images


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("epochs", 0, "--epochs"),
        ("batch_size", -1, "--batch-size"),
        ("images", 70_001, "--images"),
        ("latent_dim", 0, "--latent-dim"),
        ("seed", -1, "--seed"),
        ("checkpoint_every", 0, "--checkpoint-every"),
        ("g_lr", 0.0, "--g-lr"),
        ("d_lr", float("nan"), "--d-lr"),
        ("epochs", 2.5, "--epochs"),
        ("epochs", True, "--epochs"),
        ("out", "", "--out"),
        ("loss", "lsgan", "--loss"),
        ("arch", "vit", "--arch"),
        ("ema", 1.0, "--ema"),
        ("ema", 0.2, "--ema"),
        ("d_steps", 0, "--d-steps"),
        ("beta_1", 1.0, "--beta-1"),
        ("beta_2", -0.1, "--beta-2"),
        ("spectral_norm", "yes", "--spectral-norm"),
        ("conditional", 1, "--conditional"),
        ("class_loss", 11.0, "--class-loss"),
        ("class_loss", 1.0, "--conditional"),  # a classifier needs labelled images
    ],
)
def test_bad_settings_are_refused_with_the_flag_named(field, value, flag):
    with pytest.raises(PrendasError, match=flag):
        TrainConfig(**{field: value})


def test_round_trip_and_unknown_keys():
    c = TrainConfig(epochs=3, seed=9)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(PrendasError, match="unknown training settings: colour"):
        TrainConfig.from_dict({**c.to_dict(), "colour": 1})
    with pytest.raises(PrendasError, match="--batch-size"):
        c.replace(batch_size=0)


def test_each_loss_brings_its_papers_defaults_unless_told_otherwise():
    assert [TrainConfig().resolved(k) for k in ("d_steps", "beta_1", "beta_2")] == [1, 0.9, 0.999]
    assert [TrainConfig(loss="wgan-gp").resolved(k) for k in ("d_steps", "beta_1", "beta_2")] == [5, 0.0, 0.9]
    assert [TrainConfig(loss="hinge").resolved(k) for k in ("d_steps", "beta_1", "beta_2")] == [1, 0.5, 0.999]
    assert TrainConfig(loss="wgan-gp", d_steps=2).resolved("d_steps") == 2


def test_recipe_names_what_differs_from_the_tutorial():
    assert TrainConfig().recipe() == "bce"
    assert TrainConfig(loss="hinge", spectral_norm=True, ema=0.999, conditional=True).recipe() == "hinge+sn+ema0.999+cond"
    assert TrainConfig(loss="hinge", conditional=True, class_loss=0.5).recipe() == "hinge+cond+ac0.5"
    assert TrainConfig(latent_dim=64, g_lr=2e-4, d_lr=2e-4).recipe() == "bce+z64+lr0.0002"
    assert TrainConfig(d_lr=4e-4).recipe() == "bce+glr0.0001+dlr0.0004"


def test_settings_saved_before_the_recipes_existed_still_load():
    old = {k: v for k, v in TrainConfig(epochs=3).to_dict().items()
           if k not in ("loss", "d_steps", "beta_1", "beta_2", "spectral_norm", "ema", "arch", "conditional")}
    assert TrainConfig.from_dict(old) == TrainConfig(epochs=3)


def test_a_preset_from_python():
    """TrainConfig.preset: what `train --preset` does, for Python and the notebook."""
    from prendas.config import PRESETS

    config = TrainConfig.preset("best", epochs=5, images=1_000)
    assert (config.epochs, config.images) == (5, 1_000)
    assert {k: getattr(config, k) for k in PRESETS["best"]} == PRESETS["best"]
    assert TrainConfig.preset("best", ema=0.9).ema == 0.9  # the settings given win
    # without labels, the preset's classifier goes with them
    assert TrainConfig.preset("best", conditional=False).class_loss == 0.0
    with pytest.raises(PrendasError, match="--class-loss needs --conditional"):
        TrainConfig.preset("best", conditional=False, class_loss=1.0)
    assert TrainConfig.preset("tutorial") == TrainConfig()
    with pytest.raises(PrendasError, match="unknown preset 'fast': one of tutorial, best, best-w32, rpgan-lazy, rpgan, sngan"):
        TrainConfig.preset("fast")
    # best is rpgan with lazy R1/R2, bfloat16 where the hardware has it, twice the learning rate and half the width;
    # best-w32 (the shipped generator's recipe) the same at the tutorial's width; rpgan-lazy that at rpgan's rate
    assert PRESETS["rpgan-lazy"] == {**PRESETS["rpgan"], "reg_every": 4, "precision": "auto"}
    assert PRESETS["best-w32"] == {**PRESETS["rpgan-lazy"], "g_lr": 4e-4, "d_lr": 4e-4}
    assert PRESETS["best"] == {**PRESETS["best-w32"], "width": 16, "g_lr": 8e-4, "d_lr": 8e-4}
    assert TrainConfig.preset("best", precision="float32").precision == "float32"


def test_bench_settings_are_checked_in_one_place():
    from prendas.config import check_bench

    check_bench(256, 10, 3, 5)
    with pytest.raises(PrendasError, match="--batch-size must be from 1 to 60000, got 60001"):
        check_bench(60_001, 10, 3, 1)  # whole batches of the 60,000 training images
    with pytest.raises(PrendasError, match="--repeats must be from 1 to 1000, got 0"):
        check_bench(256, 10, 0, 1)
    with pytest.raises(PrendasError, match=r"--steps \(10\) must be a multiple of --steps-per-execution \(3\)"):
        check_bench(256, 10, 3, 3)


def test_bfloat16_on_a_processor_without_it_warns_in_one_line(monkeypatch):
    """Where bfloat16 would be emulated (no GPU, no AVX512_BF16 or AMX), a bf16 run says so; where it is native, not."""
    import warnings

    from prendas import devices
    from prendas.train import build_gan

    monkeypatch.setattr(devices, "gpu_names", lambda: [])
    config = TrainConfig(latent_dim=8, precision="mixed_bfloat16")
    for flags, emulated in (({"avx2", "fma"}, True), ({"avx512f", "avx512_bf16"}, False), ({"amx_bf16"}, False)):
        monkeypatch.setattr(devices, "cpu", lambda flags=flags: ("a CPU", flags))
        assert devices.native_bf16() is not emulated
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            build_gan(config)
        said = [str(w.message) for w in caught if "bfloat16" in str(w.message)]
        assert len(said) == emulated and all("emulated, slower than float32" in s and "\n" not in s for s in said)


def test_auto_precision_is_bfloat16_where_the_hardware_has_it_and_the_run_records_which(monkeypatch, tmp_path):
    from prendas import devices
    from prendas.train import train

    for native, expected in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(devices, "native_bf16", lambda native=native: native)
        assert devices.resolve_precision("auto") == expected
        assert [devices.resolve_precision(p) for p in ("float32", "mixed_float16", "float64")] == [
            "float32", "mixed_float16", "float64"]  # (only auto is resolved)
        run = train(TrainConfig(epochs=1, images=8, batch_size=4, latent_dim=8, precision="auto",
                                out=str(tmp_path / expected)), log=lambda line: None)
        assert run.config.precision == expected and run.gan.generator.dtype_policy.name == expected
        assert json.loads(run.paths["run_json"].read_text())["config"]["precision"] == expected
    assert TrainConfig(precision="auto").recipe() == "bce+auto"  # (a config not yet resolved says so)
