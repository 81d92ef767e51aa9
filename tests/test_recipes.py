"""The GAN recipes (issue 5): losses, WGAN-GP's penalty and critic steps, spectral norm, EMA, the deep
networks and conditional generation, each on a tiny run or with a known answer."""

import json

import keras
import numpy as np
import pytest
from conftest import files_under, run_cli

from prendas import PrendasError, artifacts, precision, sampling
from prendas.__main__ import class_index
from prendas.config import PRESETS, TrainConfig
from prendas.gan import GAN
from prendas.losses import class_loss, discriminator_loss, generator_loss, gradient_penalty
from prendas.models import build_discriminator, build_generator, computes_in, generator_signature
from prendas.sampling import generate_images, latent_batch
from prendas.train import build_gan, train


def _tiny(tmp_path, **settings):
    base = dict(epochs=1, images=256, batch_size=64, latent_dim=16, out=str(tmp_path))
    return TrainConfig(**{**base, **settings})


# ---- losses: known answers ------------------------------------------------------------------


@pytest.mark.numeric
def test_losses_known_answers():
    real, fake = np.array([2.0, 0.5]), np.array([-1.5, 0.5])
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    assert float(discriminator_loss(real, fake, "bce")) == pytest.approx(softplus(-real).mean() + softplus(fake).mean())
    assert float(generator_loss(fake, "bce")) == pytest.approx(softplus(-fake).mean())
    assert float(discriminator_loss(real, fake, "wgan-gp")) == pytest.approx(fake.mean() - real.mean())
    # hinge: max(0, 1 - real) = [0, 0.5]; max(0, 1 + fake) = [0, 1.5]
    assert float(discriminator_loss(real, fake, "hinge")) == pytest.approx(0.25 + 0.75)
    assert float(generator_loss(fake, "hinge")) == pytest.approx(0.5)


@pytest.mark.numeric
def test_class_loss_known_answers():
    labels = np.array([[2], [0]])
    # uniform logits: log(10) whatever the label; a confident right answer: about 0
    assert float(class_loss(np.zeros((2, 10)), labels)) == pytest.approx(np.log(10), rel=1e-5)
    confident = np.full((2, 10), -20.0)
    confident[0, 2] = confident[1, 0] = 20.0
    assert float(class_loss(confident, labels)) == pytest.approx(0.0, abs=1e-6)
    # the GAN weighs it, and has no term without the classifier
    gan = GAN(build_generator(8, conditional=True), build_discriminator(conditional=True, classifier=True),
              class_weight=2.0)
    assert float(gan._class_term(np.zeros((2, 10)), labels)) == pytest.approx(2 * np.log(10), rel=1e-5)
    with pytest.raises(ValueError, match="classifier output"):
        GAN(build_generator(8, conditional=True), build_discriminator(conditional=True), class_weight=1.0)


def test_the_class_loss_teaches_the_discriminator_the_classes(tmp_path):
    """64 steps with --class-loss: the discriminator's second output names the class of real garments
    far above chance (measured: 76% of 512 training images; chance is 10%)."""
    config = _tiny(tmp_path, epochs=2, images=1024, batch_size=32, seed=1, loss="hinge", conditional=True,
                   class_loss=1.0, d_lr=4e-4)
    run = train(config, log=lambda line: None)
    images = np.asarray(run.gan.train_images, np.float32)[:512].reshape(-1, 28, 28, 1) / 127.5 - 1
    labels = np.asarray(run.gan.train_labels)[:512].astype(np.int32).reshape(-1, 1)
    scores, logits = run.gan.discriminator([images, labels], training=False)
    assert np.mean(np.argmax(np.asarray(logits), axis=1) == labels[:, 0]) > 0.5
    # without the class loss, the discriminator has one output: the score
    assert build_gan(config.replace(class_loss=0.0)).discriminator.output_shape == (None, 1)


@pytest.mark.numeric
def test_gradient_penalty_is_zero_for_unit_gradients_and_one_for_none():
    unit = np.zeros((4, 28, 28, 1), np.float32)
    unit[:, 3, 5, 0] = 1.0
    assert float(gradient_penalty(unit)) == pytest.approx(0.0, abs=1e-6)
    assert float(gradient_penalty(np.zeros_like(unit))) == pytest.approx(1.0, abs=1e-5)
    assert float(gradient_penalty(3 * unit)) == pytest.approx(4.0, abs=1e-5)


def test_wgan_gp_penalty_is_computed_on_the_critic():
    """A linear critic w.x has gradient w everywhere: the penalty is exactly 10 * (|w| - 1)^2."""
    critic = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False)])
    w = np.zeros((784, 1), np.float32)
    w[:2, 0] = [3.0, 4.0]  # |w| = 5
    critic.set_weights([w])
    gan = GAN(build_generator(8), critic, loss="wgan-gp")
    real = np.random.default_rng(0).uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    fake = np.random.default_rng(1).uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    real_out, fake_out = critic(real), critic(fake)
    mix = np.random.default_rng(2).uniform(0, 1, (6, 1, 1, 1)).astype(np.float32)
    d_values = [v.value for v in critic.trainable_variables]
    d_loss = gan._critic_loss(real_out, fake_out, None) + gan._interpolate_penalty(d_values, [], real, fake, None, mix)
    expected = float(np.mean(fake_out) - np.mean(real_out)) + 10 * (5 - 1) ** 2
    assert float(d_loss) == pytest.approx(expected, rel=1e-5)


# ---- training with each recipe --------------------------------------------------------------


# Every recipe's step in one table: each row a tiny run (8 images in batches of 4: two steps) of a combination of
# options, so that each option trains at least once, with and without labels. (Whether the step computes the same
# on TensorFlow and JAX, and split over devices, is test_backends_agree's and test_devices'.)
RECIPES = {
    "hinge+sn+ema": {"loss": "hinge", "spectral_norm": True, "ema": 0.9},
    # two critic steps, then the generator's: the penalty, labels and the classifier
    "wgan-gp+2-critic-steps+cond+ac": {"loss": "wgan-gp", "d_steps": 2, "conditional": True, "class_loss": 1.0},
    "deep+cond": {"arch": "deep", "conditional": True},
    "narrow+rpgan+r1+r2-every-2-steps+sn+cond+ac": {"width": 8, "loss": "rpgan", "r1": 0.05, "r2": 0.05, "reg_every": 2,
                                                    "spectral_norm": True, "conditional": True, "class_loss": 1.0},
    "resnet+rpgan+r1+r2+ema-kimg": {"arch": "resnet", "width": 8, "loss": "rpgan", "r1": 0.05, "r2": 0.05,
                                    "ema_kimg": 1.0},
    # critic steps: the generator's own update scores its fakes against the step's real images
    "rpgan+r1+2-critic-steps+sn+cond+ac": {"loss": "rpgan", "r1": 0.05, "d_steps": 2, "spectral_norm": True,
                                           "conditional": True, "class_loss": 1.0},
    "bce+augment": {"augment": "translation,cutout"},
    # the penalties every second step (lazy regularization): one step with them, one without
    "rpgan+r1+r2-every-2-steps": {"loss": "rpgan", "r1": 0.05, "r2": 0.05, "reg_every": 2},
    # the same compiled by XLA (until 2026-12-06 it failed to compile: the penalties' cond was differentiated)
    "rpgan+r1+r2-every-2-steps+sn+cond+ac+xla": {"loss": "rpgan", "r1": 0.05, "r2": 0.05, "reg_every": 2,
                                                 "spectral_norm": True, "conditional": True, "class_loss": 1.0,
                                                 "xla": True},
    "rpgan+gamma-schedule+augment+2-critic-steps+cond": {"loss": "rpgan", "r1": 0.05, "r2": 0.05, "gamma_kimg": 1.0,
                                                         "augment": "translation", "d_steps": 2, "conditional": True},
    # float16: the loss scale inside the tapes (with it outside, no gradient at all), with the penalty's too
    "fp16": {"precision": "mixed_float16"},
    "fp16+wgan-gp": {"precision": "mixed_float16", "loss": "wgan-gp", "d_steps": 2},
    "bf16+hinge+ema+cond+ac": {"precision": "mixed_bfloat16", "loss": "hinge", "ema": 0.9, "conditional": True,
                               "class_loss": 1.0},
    "float64": {"precision": "float64", "loss": "rpgan", "r1": 0.05, "ema": 0.9},
}


@pytest.mark.parametrize("settings", RECIPES.values(), ids=RECIPES.keys())
def test_each_recipe_trains(tmp_path, settings):
    config = TrainConfig(epochs=1, images=8, batch_size=4, latent_dim=16, out=str(tmp_path), **settings)
    run = train(config, log=lambda line: None)
    assert all(np.isfinite([h["d_loss"], h["g_loss"]]).all() for h in run.history)
    d_steps, g_steps = int(run.gan.d_optimizer.iterations), int(run.gan.g_optimizer.iterations)
    if config.precision == "mixed_float16":  # a LossScaleOptimizer skips the steps whose gradients overflow
        assert 0 < d_steps <= 2 and 0 < g_steps <= 2
    else:
        assert d_steps == 2 and g_steps == 2 // config.resolved("d_steps")
    # What the run saved computes in its weights' precision, whatever precision trained it (float64: float64)
    full = "float64" if config.precision == "float64" else "float32"
    assert computes_in(keras.models.load_model(run.paths["generator"], compile=False)) == [full]
    assert computes_in(keras.models.load_model(run.paths["discriminator"], compile=False)) == [full]
    generator = sampling.load_generator(run.paths["generator"])
    assert generator_signature(generator) == (16, config.conditional) and computes_in(generator) == [full]
    assert run.record("complete")["config"] == config.to_dict()
    assert run.record("complete")["machine"]["native_bf16"] is precision.native_bf16()
    if config.averaged:  # the saved generator is the average, and the raw weights are saved beside it
        for saved, average in zip(generator.get_weights(), run.gan.ema_generator.get_weights()):
            np.testing.assert_array_equal(saved, average)
        assert run.paths["generator_raw"].is_file()


def test_wgan_gp_steps_the_generator_once_per_five_critic_steps(tmp_path):
    # 256 images in batches of 16: 16 critic steps, so generator steps after the 5th, 10th and 15th.
    run = train(_tiny(tmp_path, loss="wgan-gp", batch_size=16), log=lambda line: None)
    assert int(run.gan.d_optimizer.iterations) == 16
    assert int(run.gan.g_optimizer.iterations) == 3
    # The paper's Adam settings, and no dropout in the critic
    assert float(run.gan.d_optimizer.beta_1) == 0.0 and float(run.gan.d_optimizer.beta_2) == 0.9
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in run.gan.discriminator.layers)


def test_spectral_norm_keeps_the_discriminators_layers_near_unit_norm(tmp_path):
    run = train(_tiny(tmp_path, loss="hinge", spectral_norm=True, epochs=2), log=lambda line: None)
    wrapped = [layer for layer in run.gan.discriminator.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    assert len(wrapped) == 3  # two convolutions and the dense layer
    for layer in wrapped:
        kernel = np.asarray(layer.layer.kernel)
        sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert sigma == pytest.approx(1.0, abs=0.08), layer.name
    # not true of the same layers without it (measured: 0.43, 1.05 and 1.41), so the check means something
    sigmas = []
    for layer in build_discriminator(dropout=0.0).layers:
        if hasattr(layer, "kernel"):
            kernel = np.asarray(layer.kernel)
            sigmas.append(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0])
    assert abs(sigmas[0] - 1) > 0.3 and abs(sigmas[-1] - 1) > 0.3


@pytest.mark.numeric
def test_ema_is_the_moving_average_of_the_generator():
    gan = build_gan(TrainConfig(latent_dim=8, ema=0.999))
    before = [np.asarray(v) for v in gan.generator.variables]
    assert all(np.array_equal(a, np.asarray(e)) for a, e in zip(before, gan.ema_generator.variables))
    gan.attach_data(np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8), batch_size=8)
    gan.train_step(np.array([0]))
    after = [np.asarray(v) for v in gan.generator.variables]
    decay = min(0.999, (1 + 1) / (10 + 1))  # the warm-up after the first generator step
    changed = 0
    for b, a, e in zip(before, after, gan.ema_generator.variables):
        np.testing.assert_allclose(np.asarray(e), decay * b + (1 - decay) * a, rtol=1e-5, atol=1e-6)
        changed += not np.array_equal(a, b)
    assert changed > 0 and gan.sampler is gan.ema_generator


@pytest.mark.numeric
def test_the_average_moves_once_per_generator_update_with_critic_steps():
    """With two critic steps per generator step the generator changes every second step: the average follows
    it once per change, not after the critic-only steps too (which would apply its decay twice as often)."""
    gan = build_gan(TrainConfig(latent_dim=8, loss="wgan-gp", d_steps=2, ema=0.9))
    gan.attach_data(np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8), batch_size=8)
    weights = [[np.asarray(v) for v in gan.generator.variables]]
    for step in range(4):
        gan.train_step(np.array([0]))
        if step % 2:
            weights.append([np.asarray(v) for v in gan.generator.variables])
    assert int(gan.g_optimizer.iterations) == 2
    expected = weights[0]
    for t, new in enumerate(weights[1:], start=1):
        decay = min(0.9, (1 + t) / (10 + t))  # the warm-up, counted in generator steps
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, new)]
    for e, average in zip(expected, gan.ema_generator.variables):
        np.testing.assert_allclose(np.asarray(average), e, rtol=1e-5, atol=1e-6)


def test_wgan_gp_interpolates_pair_each_real_image_with_a_fake_of_its_class(monkeypatch):
    """Conditional WGAN-GP: the penalty's interpolates mix each real image with a fake drawn for the real image's
    class, and the critic scores them with that class."""
    gan = build_gan(TrainConfig(latent_dim=8, loss="wgan-gp", d_steps=1, conditional=True))
    gan.attach_data(np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8), np.arange(8) % 10, 8)
    calls, run = [], gan._run

    def recording(net, values, state, images, labels):
        calls.append((net.name, np.asarray(labels).ravel().tolist()))
        return run(net, values, state, images, labels)

    monkeypatch.setattr(gan, "_run", recording)
    real_labels = np.asarray(gan.take_batch(0)[1]).ravel().tolist()
    gan.train_step(np.array([0]))
    assert [labels for name, labels in calls if name == "generator"] == [real_labels]
    judged = [labels for name, labels in calls if name == "discriminator"]
    assert len(judged) >= 3 and all(labels == real_labels for labels in judged)  # real, fake and the interpolates


def test_a_preset_fills_in_what_the_flags_leave_unset(tmp_path):
    assert TrainConfig(**PRESETS["tutorial"]) == TrainConfig()  # the tutorial is the defaults
    result = run_cli("train", "--preset", "best", "--ema", 0.9, "--no-conditional", "--epochs", 1, "--images", 32,
                     "--batch-size", 16, "--out", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = (tmp_path / "models").glob("run_*.json")
    config = json.loads(record.read_text())["config"]
    assert PRESETS["best"]["conditional"] and PRESETS["best"]["ema"] != 0.9
    # the flags given win over the preset; without labels, the preset's classifier (if any) is off too
    # (its precision "auto" stays auto, decided by each process that trains; the record says what this one ran)
    expected = {**PRESETS["best"], "ema": 0.9, "conditional": False, "class_loss": 0.0}
    assert {k: config[k] for k in expected} == expected and PRESETS["best"]["precision"] == "auto"
    assert json.loads(record.read_text())["machine"]["precision"] == precision.resolve_precision("auto")


@pytest.mark.numeric
def test_an_ema_run_saves_the_average_and_the_raw_weights(tmp_path):
    run = train(_tiny(tmp_path, ema=0.9, epochs=2), log=lambda line: None)
    saved = sampling.load_generator(run.paths["generator"])
    raw = sampling.load_generator(run.paths["generator_raw"])
    for s, e in zip(saved.get_weights(), run.gan.ema_generator.get_weights()):
        np.testing.assert_array_equal(s, e)
    for r, g in zip(raw.get_weights(), run.gan.generator.get_weights()):
        np.testing.assert_array_equal(r, g)
    assert any(not np.array_equal(s, r) for s, r in zip(saved.get_weights(), raw.get_weights()))


@pytest.mark.numeric
def test_an_ema_conditional_run_resumes_exactly(tmp_path):
    settings = dict(loss="hinge", spectral_norm=True, ema=0.99, conditional=True, deterministic=True, seed=3)
    straight = train(_tiny(tmp_path / "a", epochs=2, **settings), log=lambda line: None)
    first = train(_tiny(tmp_path / "b", epochs=1, **settings), log=lambda line: None)
    from prendas.train import resume

    resumed = resume(first.paths["checkpoint"], 1, log=lambda line: None)
    assert resumed.tag.split("_")[1] == "1+1ep"
    for a, b in zip(straight.gan.ema_generator.get_weights(), resumed.gan.ema_generator.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_deep_networks_are_bigger_and_draw_28x28():
    g, d = build_generator(100, arch="deep"), build_discriminator(arch="deep")
    assert g.count_params() > 2 * build_generator(100).count_params()
    assert d.count_params() > 2 * build_discriminator().count_params()
    assert g.output_shape == (None, 28, 28, 1) and d.output_shape == (None, 1)


# ---- conditional generation -----------------------------------------------------------------


@pytest.mark.numeric
def test_a_conditional_generator_takes_noise_and_a_label():
    g = build_generator(8, conditional=True)
    assert generator_signature(g) == (8, True)
    z = latent_batch(4, 8, seed=0)
    same_z = generate_images(g, np.repeat(z[:1], 10, 0), labels=np.arange(10))
    assert len({img.tobytes() for img in same_z}) == 10  # the label changes the garment
    with pytest.raises(PrendasError, match="trained without labels"):
        generate_images(build_generator(8), z, labels=np.zeros(4, np.int32))


@pytest.mark.parametrize(
    "name, index", [("sneaker", 7), ("Sneakers", 7), ("7", 7), ("t-shirt", 0), ("top", 0), ("Ankle boot", 9), ("shirt", 6)]
)
def test_class_names_and_numbers(name, index):
    assert class_index(name) == index


def test_an_unknown_class_lists_the_valid_ones():
    with pytest.raises(PrendasError, match="unknown class 'hat'.*0 T-shirt/top.*9 Ankle boot"):
        class_index("hat")
    with pytest.raises(PrendasError, match="unknown class '10'"):
        class_index("10")


def _copier(rows):
    """A 'generator' that answers label c with rows[c] (uint8 28x28), whatever the noise.

    Through an Embedding whose rows are those images (plus the noise through a zero Dense layer),
    so it is a real Keras model that the evaluation and the command line load like any other
    conditional generator.
    """
    z = keras.Input((4,))
    label = keras.Input((1,), dtype="int32")
    table = keras.layers.Embedding(10, 784)
    noise = keras.layers.Dense(784, kernel_initializer="zeros", use_bias=False)(z)
    out = keras.layers.Reshape((28, 28, 1))(keras.layers.Add()([keras.layers.Flatten()(table(label)), noise]))
    model = keras.Model([z, label], out)
    table.set_weights([rows.reshape(10, 784).astype(np.float32) / 127.5 - 1])
    return model


@pytest.fixture(scope="module")
def first_of_each_class(real_data_dir):
    from prendas.data import load_fashion_mnist

    data = load_fashion_mnist()
    return np.stack([data.x_train[np.flatnonzero(data.y_train == c)[0]] for c in range(10)])


@pytest.fixture(scope="module")
def class_copier(first_of_each_class):
    return _copier(first_of_each_class)


def test_conditional_evaluation_reports_the_class_agreement(class_copier, first_of_each_class):
    from prendas.evaluate import Reference, evaluate_generator

    result = evaluate_generator(class_copier, n=500, reference=Reference.shared(), floor=False)
    assert result["conditional"] is True
    m = result["metrics"]
    assert m["label_agreement"] >= 0.9 and len(m["label_agreement_per_class"]) == 10
    assert m["classes_over_5pct"] == 10
    # a generator that ignores the label (always the bag) agrees only by chance, and collapses
    ignoring = _copier(np.repeat(first_of_each_class[8:9], 10, axis=0))
    m = evaluate_generator(ignoring, n=500, reference=Reference.shared(), floor=False)["metrics"]
    assert m["label_agreement"] <= 0.2 and m["classes_over_5pct"] == 1


def test_generate_draws_the_class_asked_for(class_copier, tmp_path):
    from PIL import Image

    model = tmp_path / "generator_c.keras"
    artifacts.save_model(class_copier, model)
    result = run_cli("generate", "--model", model, "--class", "sneaker", "--n", "3", "--out", tmp_path / "s.png")
    assert result.returncode == 0, result.stderr
    assert "wrote 3 Sneaker images" in result.stdout
    assert Image.open(tmp_path / "s.png").size[0] > 28


def test_generate_refuses_a_class_from_an_unconditional_model_and_unknown_classes(tmp_path, capsys):
    from prendas.__main__ import main

    artifacts.save_model(build_generator(8), tmp_path / "generator_u.keras")
    before = files_under(tmp_path)
    model, out = str(tmp_path / "generator_u.keras"), str(tmp_path / "b.png")
    assert main(["generate", "--model", model, "--class", "bag", "--out", out]) == 2
    assert "trained without labels" in capsys.readouterr().err
    assert main(["generate", "--model", model, "--class", "hat", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown class 'hat'" in err and "Ankle boot" in err
    assert files_under(tmp_path) == before


@pytest.mark.numeric
def test_a_class_morph_starts_and_ends_at_the_two_classes():
    """In float64: the morph (5 garments, from the embedded label on) and its ends (2, from the label) are two
    computations of other batch shapes, whose float32 rounding the processor decides."""
    from prendas.sampling import interpolate_latents, morph_classes

    keras.config.set_dtype_policy("float64")
    try:
        g = build_generator(8, conditional=True)
    finally:
        keras.config.set_dtype_policy("float32")
    z = latent_batch(2, 8, seed=0)
    morph = morph_classes(g, z[0], 7, 9, steps=5)
    ends = generate_images(g, np.repeat(z[:1], 2, axis=0), labels=np.array([7, 9]))
    assert morph.shape == (5, 28, 28)
    assert np.array_equal(morph[0], ends[0]) and np.array_equal(morph[-1], ends[1])
    with pytest.raises(PrendasError, match="unconditional"):
        morph_classes(build_generator(8), z[0], 7, 9, steps=5)
    path = interpolate_latents(z[0], z[1], 6)
    assert path.shape == (6, 8) and np.allclose(path[0], z[0]) and np.allclose(path[-1], z[1], atol=1e-5)
