"""R3GAN's pieces (issue 16): the relativistic pairing loss, the zero-centred penalties R1 and R2, and a moving
average whose half-life grows with the images seen; known answers, then tiny runs through the step."""

import keras
import numpy as np
import pytest

from prendas import PrendasError
from prendas.config import PRESETS, TrainConfig
from prendas.gan import GAN, _scores_and_logits
from prendas.losses import discriminator_loss, generator_loss
from prendas.models import build_discriminator, build_generator


def _softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.numeric
def test_the_relativistic_loss_scores_each_real_image_against_its_fake():
    real, fake = np.array([[2.0], [0.0], [-1.0]]), np.array([[1.0], [0.5], [-3.0]])
    # D: softplus(-(real - fake)), G: softplus(-(fake - real)), each averaged over the pairs
    assert float(discriminator_loss(real, fake, "rpgan")) == pytest.approx(np.mean(_softplus(fake - real)))
    assert float(generator_loss(fake, "rpgan", real)) == pytest.approx(np.mean(_softplus(real - fake)))
    # equal scores: log 2 for both; a real far above its fake: about 0 for D, the margin for G
    assert float(discriminator_loss(real, real, "rpgan")) == pytest.approx(np.log(2))
    assert float(discriminator_loss(np.array([[30.0]]), np.array([[0.0]]), "rpgan")) == pytest.approx(0, abs=1e-6)
    assert float(generator_loss(np.array([[0.0]]), "rpgan", np.array([[30.0]]))) == pytest.approx(30, rel=1e-6)


@pytest.mark.numeric
def test_r1_and_r2_of_a_linear_critic_are_gamma_half_its_squared_weight():
    """A linear critic w.x has gradient w at every image: the penalty is gamma/2 |w|^2, whatever the images."""
    critic = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(1, use_bias=False)])
    w = np.zeros((784, 1), np.float32)
    w[:2, 0] = [3.0, 4.0]  # |w|^2 = 25
    critic.set_weights([w])
    gan = GAN(build_generator(8), critic, loss="rpgan", r1=0.2, r2=0.2)
    images = np.random.default_rng(0).uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    out, state, penalty = gan._judge([v.value for v in critic.trainable_variables], [], images, None, 0.2)
    assert float(penalty) == pytest.approx(0.2 / 2 * 25, rel=1e-5)
    np.testing.assert_allclose(np.asarray(out), images.reshape(6, -1) @ w, rtol=1e-5)  # the scores of the same pass
    assert gan._judge([v.value for v in critic.trainable_variables], [], images, None, 0.0)[2] == 0.0


def _lazy_judge(steps, dtype=None):
    """A linear critic (w = (3, 4, 0, ...), |w|^2 = 25) in a GAN with --reg-every 4 and gamma 0.2, judging the same 6
    images at its first `steps` discriminator steps: (gan, [(outputs, penalty) of each step], the float32 scores)."""
    critic = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(1, use_bias=False, dtype=dtype)])
    w = np.zeros((784, 1), np.float32)
    w[:2, 0] = [3.0, 4.0]
    critic.set_weights([w])
    gan = GAN(build_generator(8), critic, loss="rpgan", r1=0.2, reg_every=4)
    gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    gan.build_optimizers()
    images = np.random.default_rng(0).uniform(-1, 1, (6, 28, 28, 1)).astype(np.float32)
    judged = []
    for step in range(steps):
        gan.d_optimizer.iterations.assign(step)
        r1, _ = gan._gammas(bool(gan._penalty_due()))  # (what the step takes: 0.2 on its penalized steps, else 0)
        out, _, penalty = gan._judge([v.value for v in critic.trainable_variables], [], images, None, r1)
        judged.append((out, penalty))
    return gan, judged, images.reshape(6, -1) @ w


@pytest.mark.numeric
def test_lazy_penalties_come_every_k_steps_with_k_times_the_weight():
    """--reg-every 4: the penalty at discriminator steps 0, 4, 8 ... weighs 4 gamma/2 |w|^2, nothing between, the same
    scores at every step: over any 4 steps the same total weight as every step's gamma/2 |w|^2."""
    _, judged, expected = _lazy_judge(8)
    penalties = [float(penalty) for _, penalty in judged]
    for out, _ in judged:
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5)
    assert penalties == pytest.approx([4 * 0.2 / 2 * 25, 0, 0, 0] * 2, rel=1e-5)
    assert sum(penalties[:4]) == pytest.approx(4 * 0.2 / 2 * 25, rel=1e-5)  # = 4 steps of the eager penalty
    # StyleGAN2's adjustment of the discriminator's Adam for K = 4: c = 4/5
    config = TrainConfig(loss="rpgan", r1=0.05, reg_every=4, d_lr=2e-4)
    assert config.d_adam() == pytest.approx((2e-4 * 0.8, 0.0, 0.99**0.8))
    assert TrainConfig(loss="rpgan", r1=0.05, d_lr=2e-4).d_adam() == pytest.approx((2e-4, 0.0, 0.99))
    assert "+reg4" in config.recipe()
    with pytest.raises(PrendasError, match="--reg-every spaces out the penalties"):
        TrainConfig(reg_every=4)


def test_the_lazy_step_takes_its_penalized_branch_on_every_kth_discriminator_step():
    """The step itself (GAN._lazily, through the backend's cond): the update with R1/R2 at steps 0, 4, 8 ..., the
    update without them between (the known answers above hold for what each branch computes)."""
    gan, _, _ = _lazy_judge(0)
    taken = []
    for step in range(8):
        gan.d_optimizer.iterations.assign(step)
        gan._lazily(taken.append)
    assert taken == [True, False, False, False] * 2
    gan.reg_every = 1
    gan._lazily(taken.append)  # every step's penalty: no cond
    assert taken[-1] is True and len(taken) == 9


def test_lazy_penalties_in_bfloat16_come_out_in_float32_with_the_same_known_answer():
    """--preset best in bfloat16 (where the hardware has it): the layers compute in bf16, the scores and the penalty
    reach the losses in float32. With weights bf16 holds exactly (3, 4), the input gradient is exact, so the
    penalty is the float32 answer, 4 x gamma/2 |w|^2 at step 0 and 0 at the next three."""
    gan, judged, expected = _lazy_judge(4, dtype="mixed_bfloat16")
    dense = gan.discriminator.layers[-1]
    assert dense.compute_dtype == "bfloat16" and dense.kernel.dtype == "float32"
    for out, penalty in judged:
        scores = _scores_and_logits(out, gan.float)[0]  # (what the losses take: the output cast to the step's float32)
        dtypes = [keras.backend.standardize_dtype(x.dtype) for x in (out, scores, penalty)]
        assert dtypes == ["bfloat16", "float32", "float32"]
        # the score, rounded through bf16 (8 bits of mantissa), against the float32 one
        np.testing.assert_allclose(np.asarray(scores), expected, rtol=2e-2, atol=2e-2)
    assert [float(penalty) for _, penalty in judged] == [4 * 0.2 / 2 * 25, 0, 0, 0]


@pytest.mark.numeric
@pytest.mark.parametrize("steps, expected_half_life", [(1, 0.05 * 64), (100, 0.05 * 6_400), (10_000, 1_000.0)])
def test_the_average_has_a_half_life_of_5_percent_of_the_images_seen_up_to_ema_kimg(steps, expected_half_life):
    """StyleGAN2-ADA's ramp: after t generator steps of B images the half-life is min(K x 1000, 0.05 t B) images."""
    gan = GAN(build_generator(8), build_discriminator(), ema_kimg=1.0, ema_generator=build_generator(8))
    gan.batch_size = 64
    gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    gan.build_optimizers()
    gan.g_optimizer.iterations.assign(steps)
    for source, target in zip(gan.generator.variables, gan.ema_generator.variables):
        source.assign(np.ones(source.shape, source.dtype))
        target.assign(np.zeros(target.shape, target.dtype))
    gan._update_ema()
    decay = 0.5 ** (64 / expected_half_life)  # ema <- decay * ema + (1 - decay) * weights, from 0 towards 1
    assert np.asarray(gan.ema_generator.variables[0]).mean() == pytest.approx(1 - decay, rel=1e-4)


def test_settings_of_the_new_pieces_are_checked():
    with pytest.raises(PrendasError, match="--r1"):
        TrainConfig(r1=-1.0)
    with pytest.raises(PrendasError, match="--ema-kimg"):
        TrainConfig(ema_kimg=0.01)
    with pytest.raises(PrendasError, match="give one"):
        TrainConfig(ema=0.999, ema_kimg=10.0)
    assert TrainConfig(loss="rpgan").resolved("beta_1") == 0.0 and TrainConfig(loss="rpgan").resolved("beta_2") == 0.99
    assert TrainConfig(loss="rpgan", r1=0.05, r2=0.05, ema_kimg=10.0).recipe() == "rpgan+r10.05+r20.05+emak10"


def test_the_residual_networks_start_as_their_skeleton_and_take_labels():
    """--arch resnet: every block's last convolution starts at zero, so each block starts as the identity;
    the conditional networks take a label like the tutorial's (embedding, projection, classifier)."""
    from prendas.sampling import morph_classes

    g = build_generator(16, arch="resnet", conditional=True, width=8)
    d = build_discriminator(arch="resnet", conditional=True, classifier=True, width=8)
    assert g.input_shape == [(None, 16), (None, 1)] and g.output_shape == (None, 28, 28, 1)
    assert d.output_shape == [(None, 1), (None, 10)]
    adds = [layer for layer in g.layers + d.layers if isinstance(layer, keras.layers.Add) and layer.name.startswith("add")]
    zeros = [layer for layer in g.layers + d.layers if isinstance(layer, keras.layers.Conv2D)
             and not np.any(np.asarray(layer.kernel))]
    assert len(zeros) == 12 and len(adds) >= 12  # 2 blocks x 3 stages in each network
    # the discriminator's 7x7 depthwise basis: MSR's N(0, 1/fan-in) with the 49 inputs each filter sees
    wide = build_discriminator(arch="resnet", width=64)
    [basis] = [layer for layer in wide.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert abs(float(np.std(np.asarray(basis.kernel))) * 7 - 1) < 0.05  # (12,544 draws)
    assert not any(isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout,
                                      keras.layers.SpectralNormalization)) for layer in g.layers + d.layers)
    # (the walk from one class to another works on it, as on the tutorial's conditional generator)
    assert morph_classes(g, np.zeros(16, np.float32), 7, 9, steps=3).shape == (3, 28, 28)
    with pytest.raises(PrendasError, match="without normalization"):
        TrainConfig(arch="resnet", spectral_norm=True)
    # the width option: the narrowest stage's channels, the widest's 4x
    narrow, wide = (build_discriminator(arch="resnet", width=w).count_params() for w in (8, 16))
    assert wide > 3 * narrow


def test_bench_measures_a_presets_step_beside_the_tutorials_loop():
    from prendas.bench import run_benchmark

    lines = []
    r = run_benchmark(batch_size=16, steps=4, repeats=1, preset="best", precision="float32", log=lines.append)
    assert r["settings"]["recipe"] == TrainConfig.preset("best", precision="float32").recipe() == (
        "rpgan+r10.05+r20.05+sn+ema0.999+reg4+w16+cond+ac1+lr0.0008")
    assert TrainConfig.preset("best-w32", precision="float32").recipe() == (
        "rpgan+r10.05+r20.05+sn+ema0.999+reg4+cond+ac1+lr0.0004")  # the shipped generator's
    assert TrainConfig.preset("rpgan-lazy", precision="float32").recipe() == (
        "rpgan+r10.05+r20.05+sn+ema0.999+reg4+cond+ac1+lr0.0002")
    assert TrainConfig(**PRESETS["rpgan"]).recipe() == "rpgan+r10.05+r20.05+sn+ema0.999+cond+ac1+lr0.0002"
    assert r["project_images_per_s"] > 0 and r["baseline_images_per_s"] > 0 and "rpgan+r10.05" in lines[0]
    assert TrainConfig(**PRESETS["sngan"]).recipe() == "hinge+sn+ema0.999+cond+ac1+lr0.0002"  # the previous best
