import keras
import numpy as np
import pytest

from prendas.config import TrainConfig
from prendas.models import build_discriminator, build_generator
from prendas.sampling import generate_images, latent_batch, to_uint8
from prendas.train import build_gan

pytestmark = pytest.mark.numeric  # (compares computed numbers: CI runs it again held to AVX2)


def test_generator_is_the_tutorials():
    g = build_generator(100)
    assert g.input_shape == (None, 100) and g.output_shape == (None, 28, 28, 1)
    # Dense 100->12544 (no bias), BatchNorms, Conv2DTranspose 256->128->64->1 (5x5, no bias)
    assert g.count_params() == 2_330_944
    out = np.asarray(g(np.zeros((3, 100), np.float32)))
    assert out.shape == (3, 28, 28, 1) and np.all(np.abs(out) <= 1)  # tanh


def test_latent_size_is_configurable():
    assert build_generator(16).input_shape == (None, 16)


def test_discriminator_is_the_tutorials():
    d = build_discriminator()
    assert d.input_shape == (None, 28, 28, 1) and d.output_shape == (None, 1)
    assert d.count_params() == 212_865
    assert [type(layer).__name__ for layer in d.layers].count("Dropout") == 2


def test_width_scales_every_layers_filters_and_32_is_the_tutorials():
    def filters(model):
        return [layer.filters for layer in model.layers if hasattr(layer, "filters")] + [
            layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]

    assert filters(build_generator(100, width=32)) == filters(build_generator(100)) == [128, 64, 1, 7 * 7 * 256]
    assert filters(build_generator(100, width=16)) == [64, 32, 1, 7 * 7 * 128]
    assert filters(build_generator(100, width=24)) == [96, 48, 1, 7 * 7 * 192]
    assert filters(build_discriminator(width=16)) == [32, 64, 1]
    assert filters(build_generator(100, arch="deep", width=16)) == [128, 64, 32, 1, 7 * 7 * 256]
    # (spectral norm wraps the convolutions; the width reaches inside)
    wrapped = build_discriminator(width=16, spectral_norm=True, conditional=True, classifier=True)
    assert [layer.layer.filters for layer in wrapped.layers if hasattr(getattr(layer, "layer", None), "filters")] == [32, 64]


def test_pixels_round_trip():
    pixels = np.arange(256, dtype=np.uint8)[:196].reshape(1, 14, 14)
    scaled = np.kron(pixels, np.ones((2, 2))).reshape(1, 28, 28, 1) / 127.5 - 1.0
    assert np.array_equal(to_uint8(scaled), np.kron(pixels, np.ones((2, 2), np.uint8)))


def test_generate_images_follows_the_latent_seed():
    g = build_generator(8)
    a = generate_images(g, latent_batch(5, 8, seed=1))
    b = generate_images(g, latent_batch(5, 8, seed=1))
    assert a.shape == (5, 28, 28) and a.dtype == np.uint8 and np.array_equal(a, b)


def test_steps_take_their_batches_from_the_attached_images_in_the_epochs_order():
    gan = build_gan(TrainConfig(latent_dim=8))
    images = np.arange(10, dtype=np.uint8).repeat(784).reshape(10, 28, 28) * 25  # image i is all 25*i
    gan.attach_data(images, batch_size=4)
    order = np.array([3, 9, 0, 4, 7, 1, 8, 2, 6, 5])
    gan.set_epoch_order(order)
    seen = []
    for step in range(3):
        real, labels = gan.take_batch(step)
        assert labels is None and float(np.min(real)) >= -1 and float(np.max(real)) <= 1
        seen.append(np.rint((np.asarray(real)[:, 0, 0, 0] + 1) * 127.5 / 25).astype(int).tolist())
    assert seen == [[3, 9, 0, 4], [7, 1, 8, 2], [6, 5]]  # the last step of an epoch is short


def test_short_last_batch_gets_as_many_fakes_as_reals(monkeypatch):
    gan = build_gan(TrainConfig(latent_dim=8))
    gan.attach_data(np.zeros((10, 28, 28), np.uint8), batch_size=7)
    drawn = []
    normal = keras.random.normal

    def spy(shape, *args, **kwargs):
        drawn.append(tuple(int(s) for s in shape))
        return normal(shape, *args, **kwargs)

    monkeypatch.setattr(keras.random, "normal", spy)
    for step in (0, 1):
        logs = gan.train_step(np.array([step]))
        assert np.isfinite(float(logs["d_loss"])) and np.isfinite(float(logs["g_loss"]))
    assert drawn == [(7, 8), (3, 8)]
