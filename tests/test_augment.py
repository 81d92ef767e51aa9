"""DiffAugment (issue 16): translation and cutout of what the discriminator sees, with known answers, the
gradient through them, the gamma schedule of R1 and R2, and tiny runs with both."""

import keras
import numpy as np
import pytest
from keras import ops

from prendas import PrendasError
from prendas.augment import augment, cut_out, translate
from prendas.config import TrainConfig
from prendas.gan import GAN
from prendas.losses import cosine_decay
from prendas.models import build_discriminator, build_generator

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)


def _draw_for_shift(shift, reach=4):
    """The uniform number in [0, 1) that translate turns into `shift` pixels (the middle of its interval)."""
    return (shift + reach + 0.5) / (2 * reach + 1)


def _one_dot(row, column):
    image = -np.ones((1, 28, 28, 1), np.float32)
    image[0, row, column, 0] = 1.0
    return image


@pytest.mark.parametrize("down, right", [(2, 3), (-4, 0), (0, -1), (4, 4)])
def test_translation_moves_every_pixel_by_the_drawn_shift(down, right):
    moved = np.asarray(translate(_one_dot(10, 12), np.float32([_draw_for_shift(down)]), np.float32([_draw_for_shift(right)])))
    expected = _one_dot(10 + down, 12 + right)
    np.testing.assert_array_equal(moved, expected)


def test_translation_fills_what_comes_in_from_outside_with_background():
    white = np.ones((1, 28, 28, 1), np.float32)
    moved = np.asarray(translate(white, np.float32([_draw_for_shift(3)]), np.float32([_draw_for_shift(-2)])))[0, ..., 0]
    assert (moved[:3] == -1).all() and (moved[:, -2:] == -1).all()  # three rows at the top, two columns at the right
    assert (moved[3:, :-2] == 1).all()
    # every shift in the range comes up, each about equally often, and nothing beyond +-4
    u = np.random.default_rng(0).uniform(size=9_000).astype(np.float32)
    shifts = np.floor(u * 9) - 4
    assert set(shifts) == set(range(-4, 5))


def test_cutout_erases_a_14_pixel_square_to_background():
    white = np.ones((3, 28, 28, 1), np.float32)
    # a centre in the middle (row 14, column 14): the square 7..20 x 7..20; at the corner (0, 0): only a quarter
    rows, columns = np.float32([14.5 / 29, 0.0, 28.5 / 29]), np.float32([14.5 / 29, 0.0, 3.5 / 29])
    cut = np.asarray(cut_out(white, rows, columns))[..., 0]
    assert (cut[0, 7:21, 7:21] == -1).all() and (cut[0] == -1).sum() == 14 * 14
    assert (cut[1, :7, :7] == -1).all() and (cut[1] == -1).sum() == 7 * 7
    assert (cut[2, 21:, :10] == -1).all() and (cut[2] == -1).sum() == 7 * 10
    assert set(np.unique(cut)) == {-1.0, 1.0}


def test_augmentation_passes_the_gradient_back_to_the_pixels_it_keeps():
    """The generator learns through DiffAugment: d(sum of the augmented image)/d(image) is 1 where a pixel lands
    in the frame outside the cutout, 0 where it is shifted out or erased."""
    import tensorflow as tf

    image = tf.Variable(np.random.default_rng(1).uniform(-1, 1, (1, 28, 28, 1)).astype(np.float32))
    draws = np.float32([[_draw_for_shift(2), _draw_for_shift(0), 0.0, 0.0]])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(augment(image, draws, "translation,cutout"))
    gradient = tape.gradient(total, image).numpy()[0, ..., 0]
    kept = np.ones((28, 28))
    kept[-2:] = 0  # the bottom two rows leave the frame
    kept[:5, :7] = 0  # the corner square, in the shifted image's rows 0..6, holds the original rows -2..4
    np.testing.assert_array_equal(gradient, kept)


def test_the_gamma_schedule_falls_along_a_cosine_to_a_tenth():
    assert [round(float(cosine_decay(p, final=0.1)), 6) for p in (0.0, 0.5, 1.0, 3.0)] == [1.0, 0.55, 0.1, 0.1]
    gan = GAN(build_generator(8), build_discriminator(), loss="rpgan", r1=0.2, r2=0.0, gamma_kimg=10.0)
    gan.batch_size = 100
    gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    gan.build_optimizers()
    gan.d_optimizer.iterations.assign(50)  # 5 thousand images seen: halfway
    r1, r2 = gan._gammas()
    assert float(r1) == pytest.approx(0.2 * 0.55, rel=1e-6) and r2 == 0.0
    with pytest.raises(PrendasError, match="--r1"):
        TrainConfig(gamma_kimg=100.0)
    with pytest.raises(PrendasError, match="--augment"):
        TrainConfig(augment="flip")
    assert TrainConfig(loss="rpgan", r1=0.05, gamma_kimg=500.0, augment="translation,cutout").recipe() == (
        "rpgan+r10.05+gk500+da-translation-cutout")


def test_the_discriminator_sees_augmented_images_and_the_samples_stay_clean(monkeypatch):
    """Under --augment the discriminator's inputs are transformed (erased squares appear in them); the generator's
    own output, what users get, is not."""
    seen = []
    gan = GAN(build_generator(8), build_discriminator(), augment="cutout")
    real = ops.convert_to_tensor(np.ones((4, 28, 28, 1), np.float32))
    seen_real, seen_fake = gan._seen(4)
    seen.append(np.asarray(seen_real(real)))
    assert all((image == -1).sum() >= 7 * 7 for image in seen[0])  # every image lost at least a corner square
    assert not np.array_equal(np.asarray(seen_fake(real)), seen[0])  # its own draws
    monkeypatch.setattr(gan, "augment", "none")
    assert np.array_equal(np.asarray(gan._seen(4)[0](real)), np.asarray(real))
