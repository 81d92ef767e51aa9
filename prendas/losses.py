"""The adversarial losses, on the discriminator's raw outputs, in backend-neutral keras.ops.

bce: the DCGAN tutorial's binary cross-entropy with the non-saturating generator loss.
wgan-gp: the Wasserstein critic with a gradient penalty (Gulrajani et al. 2017).
hinge: the hinge discriminator loss of SAGAN/BigGAN with the Wasserstein generator loss.
rpgan: the relativistic pairing loss of R3GAN (Huang et al. 2024): each real image's score against a fake's.
class_loss: the auxiliary classifier's cross-entropy (AC-GAN, Odena et al. 2017), added to either.
"""

import math

import keras
from keras import ops


def discriminator_loss(real_out, fake_out, loss="bce"):
    """What the discriminator (critic) minimizes, without the gradient penalties."""
    if loss == "bce":
        # softplus(-x) is BCE(1, sigmoid(x)) and softplus(x) is BCE(0, sigmoid(x)), without overflow.
        return ops.mean(ops.softplus(-real_out)) + ops.mean(ops.softplus(fake_out))
    if loss == "wgan-gp":
        return ops.mean(fake_out) - ops.mean(real_out)
    if loss == "hinge":
        return ops.mean(ops.relu(1.0 - real_out)) + ops.mean(ops.relu(1.0 + fake_out))
    if loss == "rpgan":  # softplus(-(D(real) - D(fake))): each real image should score above its paired fake
        return ops.mean(ops.softplus(fake_out - real_out))
    raise ValueError(f"unknown loss {loss!r}")


def generator_loss(fake_out, loss="bce", real_out=None):
    """What the generator minimizes: bce wants its images labelled real; wgan-gp and hinge raise the critic's
    score; rpgan raises each fake's score above its paired real image's (real_out)."""
    if loss == "bce":
        return ops.mean(ops.softplus(-fake_out))
    if loss in ("wgan-gp", "hinge"):
        return -ops.mean(fake_out)
    if loss == "rpgan":
        return ops.mean(ops.softplus(real_out - fake_out))
    raise ValueError(f"unknown loss {loss!r}")


def class_loss(logits, labels):
    """Mean cross-entropy of class logits (B, 10) against integer labels (B, 1) or (B,)."""
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def interpolate(real, fake, weights):
    """Points on the lines between real and fake images, one uniform weight per pair (B, 1, 1, 1)."""
    return weights * real + (1.0 - weights) * fake


def zero_centred_penalty(gradients):
    """R1 (at real images) or R2 (at fakes): the mean over the batch of ||grad of the critic at the image||^2."""
    return ops.mean(ops.sum(ops.square(gradients), axis=(1, 2, 3)))


def gradient_penalty(gradients):
    """The WGAN-GP penalty: the mean of (||grad of the critic at the interpolates|| - 1)^2."""
    norms = ops.sqrt(ops.sum(ops.square(gradients), axis=(1, 2, 3)) + 1e-12)
    return ops.mean(ops.square(norms - 1.0))


def cosine_decay(progress, final):
    """1 at progress 0, down half a cosine to `final` at progress 1, then `final` (R3GAN's schedules)."""
    progress = ops.clip(ops.convert_to_tensor(progress), 0.0, 1.0)  # (in the caller's precision)
    return final + (1.0 - final) * 0.5 * (1.0 + ops.cos(math.pi * progress))
