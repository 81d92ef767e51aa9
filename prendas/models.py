"""The generator and the discriminator: TensorFlow's DCGAN tutorial, in plain Keras 3 layers."""

import keras
from keras import layers

IMAGE_SHAPE = (28, 28, 1)


def build_generator(latent_dim=100):
    """Noise (latent_dim) -> 28x28x1 image in [-1, 1]: Dense 7x7x256, then Conv2DTranspose 128-64-1."""
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            layers.Dense(7 * 7 * 256, use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Reshape((7, 7, 256)),
            layers.Conv2DTranspose(128, 5, strides=1, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Conv2DTranspose(64, 5, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Conv2DTranspose(1, 5, strides=2, padding="same", use_bias=False, activation="tanh"),
        ],
        name="generator",
    )


def build_discriminator():
    """28x28x1 image -> one logit (real > 0 > fake): Conv2D 64-128 with LeakyReLU and Dropout 0.3."""
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE),
            layers.Conv2D(64, 5, strides=2, padding="same"),
            layers.LeakyReLU(),
            layers.Dropout(0.3),
            layers.Conv2D(128, 5, strides=2, padding="same"),
            layers.LeakyReLU(),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(1),
        ],
        name="discriminator",
    )
