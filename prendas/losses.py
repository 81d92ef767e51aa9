"""The adversarial losses, on logits, in backend-neutral keras.ops."""

from keras import ops


def discriminator_loss(real_logits, fake_logits):
    """Binary cross-entropy: real images are labelled 1, generated ones 0.

    softplus(-x) is BCE(1, sigmoid(x)) and softplus(x) is BCE(0, sigmoid(x)), without overflow.
    """
    return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))


def generator_loss(fake_logits):
    """The non-saturating loss: the generator wants its images labelled 1 (real)."""
    return ops.mean(ops.softplus(-fake_logits))
