"""The generator and the discriminator in plain Keras 3 layers (no backend code).

`dcgan` is TensorFlow's DCGAN tutorial; `deep` adds a block and doubles the filters (for a GPU);
`resnet` is R3GAN's residual networks without normalization (prendas.resnet). `width` sets every layer's
filters: 32 is the networks as written below (the tutorial's for `dcgan`); 24 gives each layer three quarters.
A conditional generator takes (noise, label) and draws that class; a conditional discriminator
takes (image, label) and adds a projection of the label onto its features to its score
(Miyato & Koyama 2018), so it judges "is this a real sneaker", not only "is this real"; with
`classifier=True` it also names the class it sees (a second output of ten logits, as in AC-GAN).
"""

import keras
from keras import layers

from prendas import resnet
from prendas.config import TUTORIAL_DROPOUT

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
LABEL_EMBEDDING = 50  # size of the generator's label embedding, concatenated to the noise

# (dense filters at 7x7, [(filters, stride) of each transposed convolution before the output]) at width 32
_GENERATOR_BLOCKS = {"dcgan": (256, [(128, 1), (64, 2)]), "deep": (512, [(256, 1), (128, 2), (64, 2)])}
# [(filters, stride) of each convolution] at width 32
_DISCRIMINATOR_BLOCKS = {"dcgan": [(64, 2), (128, 2)], "deep": [(64, 2), (128, 2), (256, 1)]}


def build_generator(latent_dim=100, arch="dcgan", conditional=False, width=32):
    """Noise (latent_dim) [and a class label] -> 28x28x1 image in [-1, 1].

    dcgan: Dense 7x7x256, then Conv2DTranspose 128 (7x7), 64 (14x14) and 1 (28x28), the tutorial's.
    deep: Dense 7x7x512, Conv2DTranspose 256, 128 and 64, then a 5x5 convolution to one channel.
    Those at width 32; another width scales every one of them by width/32.
    """
    z = keras.Input((latent_dim,), name="noise")
    inputs, x = [z], z
    if conditional:
        label = keras.Input((1,), dtype="int32", name="label")
        inputs.append(label)
        x = layers.Concatenate()([z, layers.Flatten()(layers.Embedding(NUM_CLASSES, LABEL_EMBEDDING)(label))])
    if arch == "resnet":
        return keras.Model(inputs if conditional else z, resnet.generator_body(x, width), name="generator")
    dense_filters, blocks = _GENERATOR_BLOCKS[arch]
    dense_filters, blocks = _scaled(dense_filters, width), [(_scaled(f, width), s) for f, s in blocks]
    x = layers.Dense(7 * 7 * dense_filters, use_bias=False)(x)
    x = layers.LeakyReLU()(layers.BatchNormalization()(x))
    x = layers.Reshape((7, 7, dense_filters))(x)
    for filters, stride in blocks:
        x = layers.Conv2DTranspose(filters, 5, strides=stride, padding="same", use_bias=False)(x)
        x = layers.LeakyReLU()(layers.BatchNormalization()(x))
    if arch == "dcgan":
        out = layers.Conv2DTranspose(1, 5, strides=2, padding="same", use_bias=False, activation="tanh")(x)
    else:
        out = layers.Conv2D(1, 5, padding="same", activation="tanh")(x)
    return keras.Model(inputs if conditional else z, out, name="generator")


def generator_of(config):
    """The generator a run's settings describe (a TrainConfig: its latent_dim, arch, conditional and width)."""
    return build_generator(config.latent_dim, config.arch, config.conditional, config.width)


def build_discriminator(arch="dcgan", dropout=TUTORIAL_DROPOUT, spectral_norm=False, conditional=False, classifier=False,
                        width=32):
    """28x28x1 image [and a class label] -> one raw score (real > fake) [and ten class logits].

    dcgan: Conv2D 64-128 (5x5, stride 2) with LeakyReLU and Dropout, then Dense 1: the tutorial's (at width 32;
    another width scales the filters by width/32).
    There is no BatchNorm, so the same network serves as a WGAN-GP critic (run with dropout=0).
    """

    if classifier and not conditional:
        raise ValueError("the auxiliary classifier is for a conditional discriminator")

    def sn(layer):
        return layers.SpectralNormalization(layer) if spectral_norm else layer

    image = keras.Input(IMAGE_SHAPE, name="image")
    if arch == "resnet":  # (no dropout, no spectral norm: R3GAN's networks train without them)
        features = resnet.discriminator_features(image, width)
    else:
        x = image
        for filters, stride in _DISCRIMINATOR_BLOCKS[arch]:
            x = layers.LeakyReLU()(sn(layers.Conv2D(_scaled(filters, width), 5, strides=stride, padding="same"))(x))
            if dropout:
                x = layers.Dropout(dropout)(x)
        features = layers.Flatten()(x)
    out = sn(layers.Dense(1))(features)
    if not conditional:
        return keras.Model(image, out, name="discriminator")
    label = keras.Input((1,), dtype="int32", name="label")
    embedded = layers.Flatten()(layers.Embedding(NUM_CLASSES, features.shape[-1])(label))
    out = layers.Add()([out, layers.Dot(axes=1)([embedded, features])])
    if classifier:  # the auxiliary classifier: which of the ten classes the image shows, from the same features
        out = [out, sn(layers.Dense(NUM_CLASSES, name="classes"))(features)]
    return keras.Model([image, label], out, name="discriminator")


def _scaled(filters, width):
    """A layer's filters at `width` (32: as written), at least one."""
    return max(1, filters * width // 32)


def in_precision(model, precision):
    """`model` computing in `precision` (a Keras dtype policy: float32, mixed_bfloat16, ...) with the same weights,
    bit for bit: `model` itself where every layer already does, else a copy rebuilt from its config.

    Precision belongs to a run, not to its files: a network trained in bfloat16 is saved computing in float32, and
    one loaded to draw computes in what the person asks for (prendas.sampling.load_generator).
    """
    changed = []

    def retyped(value):
        if isinstance(value, dict):
            if "DTypePolicy" in str(value.get("class_name", "")):  # a layer's policy (its input dtypes are plain strings)
                changed.append(value["config"]["name"] != precision)
                return precision
            return {key: retyped(item) for key, item in value.items()}
        return [retyped(item) for item in value] if isinstance(value, list) else value

    config = retyped(model.get_config())
    if not any(changed):
        return model
    copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def computes_in(model):
    """The precisions a model's layers compute in, as a sorted list of dtype policy names (['float32'])."""
    return sorted({layer.dtype_policy.name for layer in model._flatten_layers(include_self=False)
                   if not isinstance(layer, keras.layers.InputLayer)})


def generator_signature(generator):
    """(latent size, conditional?) of a generator built here or loaded from a file."""
    shapes = generator.input_shape if isinstance(generator.input_shape, list) else [generator.input_shape]
    return shapes[0][-1], len(shapes) == 2


def normalize_spectra(discriminator):
    """Store spectral normalization's kernels normalized (W / sigma(W), one power iteration), once a training step.

    Keras's SpectralNormalization writes the normalized kernel back at each call in training, a write that
    stateless_call (the training step's forward pass) drops: it is made here, alike on both backends. The
    forward pass then normalizes again (sigma near 1), with the gradient through the normalization, as
    the paper defines it.
    """
    for layer in discriminator._flatten_layers():
        if isinstance(layer, keras.layers.SpectralNormalization):
            vector_u, kernel = layer.normalized_weights()
            layer.vector_u.assign(vector_u)
            layer.kernel.assign(kernel)
