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
