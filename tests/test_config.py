import json

import pytest
from conftest import files_under

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

    from prendas import devices, precision
    from prendas.train import build_gan

    monkeypatch.setattr(precision, "gpus", lambda: [])
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # (CI's AVX2 pass: the flags below stand for the CPU)
    config = TrainConfig(latent_dim=8, precision="mixed_bfloat16")
    for flags, emulated in (({"avx2", "fma"}, True), ({"avx512f", "avx512_bf16"}, False), ({"amx_bf16"}, False)):
        monkeypatch.setattr(devices, "cpu", lambda flags=flags: ("a CPU", flags))
        assert precision.native_bf16() is not emulated
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            build_gan(config)
        said = [str(w.message) for w in caught if "bfloat16" in str(w.message)]
        assert len(said) == emulated and all("emulated, slower than float32" in s and "\n" not in s for s in said)


def test_auto_precision_is_decided_by_each_process_that_trains_and_recorded(monkeypatch, tmp_path):
    """--precision auto stays "auto" in the run's settings and checkpoint: each process that trains decides it for its
    own machine (a run begun where bfloat16 runs in hardware resumes in float32 where it does not, and the other way
    round), says which and why, and records it."""
    from prendas import precision
    from prendas.train import resume, train

    for hardware, expected in (("this CPU's AVX512_BF16", "mixed_bfloat16"), (None, "float32")):
        monkeypatch.setattr(precision, "bf16_hardware", lambda hardware=hardware: hardware)
        assert precision.resolve_precision("auto") == expected
        assert [precision.resolve_precision(p) for p in ("float32", "mixed_float16", "float64")] == [
            "float32", "mixed_float16", "float64"]  # (only auto is resolved)
    said = []
    run = train(TrainConfig(epochs=1, images=8, batch_size=4, latent_dim=8, precision="auto", out=str(tmp_path)),
                log=said.append)
    record = json.loads(run.paths["run_json"].read_text())
    assert run.config.precision == record["config"]["precision"] == "auto"
    assert run.gan.generator.dtype_policy.name == record["machine"]["precision"] == "float32"
    assert "in float32 (--precision auto: no bfloat16 in hardware here)" in said[0]
    # the same checkpoint resumed where bfloat16 runs in hardware: decided again, said, recorded (still "auto")
    monkeypatch.setattr(precision, "bf16_hardware", lambda: "NVIDIA A100 (compute capability 8.0)")
    said.clear()
    resumed = resume(run.paths["checkpoint"], 1, log=said.append)
    record = json.loads(resumed.paths["run_json"].read_text())
    assert resumed.config.precision == record["config"]["precision"] == "auto"
    assert resumed.gan.generator.dtype_policy.name == record["machine"]["precision"] == "mixed_bfloat16"
    assert "in mixed_bfloat16 (--precision auto: bfloat16 in hardware, NVIDIA A100 (compute capability 8.0))" in said[0]
    # and a resume may choose the precision (a checkpoint written before 2026-12-08 holds what auto chose then), but
    # not to or from float16, whose optimizers keep a loss scale the others do not
    again = resume(resumed.paths["checkpoint"], 1, precision="float32", log=lambda line: None)
    assert again.config.precision == "float32" and again.gan.generator.dtype_policy.name == "float32"
    before = files_under(tmp_path)
    with pytest.raises(PrendasError, match="cannot change to or from mixed_float16 when resuming"):
        resume(again.paths["checkpoint"], 1, precision="mixed_float16", log=lambda line: None)
    assert files_under(tmp_path) == before
    assert TrainConfig(precision="auto").recipe() == "bce+auto"  # (a config not yet resolved says so)


def test_a_gpu_computes_bfloat16_from_compute_capability_8(monkeypatch):
    """T4, V100 and P100 emulate bfloat16: auto trains them in float32. Every GPU must have it; the CPU's flags do not
    count where a GPU trains; a capability the backend does not give (ROCm) is taken to have it."""
    from prendas import devices, precision

    assert [precision._capability(c) for c in ("8.0", (7, 5), "9.0a", None)] == [(8, 0), (7, 5), None, None]
    assert [name for name, _ in precision.gpus()] == devices.gpu_names()  # (this machine's own, through TensorFlow)
    monkeypatch.setattr(devices, "cpu", lambda: ("a CPU", {"avx512f", "avx512_bf16"}))
    for found, expected in (
        ([("Tesla T4", (7, 5))], None), ([("Tesla V100-SXM2-16GB", (7, 0))], None), ([("Tesla P100", (6, 0))], None),
        ([("NVIDIA A100", (8, 0))], "NVIDIA A100 (compute capability 8.0)"), ([("NVIDIA H100", (9, 0))] * 2,
                                                                              "NVIDIA H100 (compute capability 9.0)"),
        ([("NVIDIA H100", (9, 0)), ("Tesla T4", (7, 5))], None), ([("AMD Instinct MI250X", None)], "AMD Instinct MI250X"),
    ):
        monkeypatch.setattr(precision, "gpus", lambda found=found: found)
        assert precision.bf16_hardware() == expected
        assert precision.resolve_precision("auto") == ("mixed_bfloat16" if expected else "float32")


def test_a_cpu_held_below_its_bfloat16_instructions_has_none(monkeypatch):
    """ONEDNN_MAX_CPU_ISA (TensorFlow's kernels) or, on JAX, XLA's --xla_cpu_max_isa below their bfloat16 levels take
    the CPU's bfloat16 away, as on an AVX2 laptop: auto trains in float32 there (CI's AVX2 pass does this). Each
    backend reads its own (in its own names)."""
    import keras

    from prendas import devices, precision

    monkeypatch.setattr(precision, "gpus", lambda: [])
    monkeypatch.setattr(devices, "cpu", lambda: ("a CPU", {"avx512f", "avx512_bf16", "amx_bf16"}))
    for variable in ("ONEDNN_MAX_CPU_ISA", "XLA_FLAGS"):
        monkeypatch.delenv(variable, raising=False)
    assert precision.bf16_hardware() == "this CPU's AMX"
    xla = "--xla_force_host_platform_device_count=2 --xla_cpu_max_isa="
    for backend, variable, value, expected in (
        ("tensorflow", "ONEDNN_MAX_CPU_ISA", "AVX2", None), ("tensorflow", "ONEDNN_MAX_CPU_ISA", "avx512_core", None),
        ("tensorflow", "ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", "this CPU's AMX"),
        ("tensorflow", "ONEDNN_MAX_CPU_ISA", "ALL", "this CPU's AMX"),
        ("tensorflow", "XLA_FLAGS", xla + "AVX2", "this CPU's AMX"),  # (TensorFlow's kernels do not read it)
        ("jax", "XLA_FLAGS", xla + "AVX2", None), ("jax", "XLA_FLAGS", xla + "AVX512", None),
        ("jax", "XLA_FLAGS", xla + "AVX512_BF16", "this CPU's AMX"), ("jax", "XLA_FLAGS", xla + "AMX", "this CPU's AMX"),
        ("jax", "ONEDNN_MAX_CPU_ISA", "AVX2", "this CPU's AMX"),  # (nor JAX's oneDNN's)
    ):
        monkeypatch.setattr(keras.backend, "backend", lambda backend=backend: backend)
        monkeypatch.setenv(variable, value)
        assert precision.bf16_hardware() == expected, (backend, variable, value)
        monkeypatch.delenv(variable)
    monkeypatch.setattr(devices, "cpu", lambda: ("a CPU", {"avx2", "fma"}))
    assert precision.bf16_hardware() is None and precision.resolve_precision("auto") == "float32"
