"""Drawing garments: a saved generator (or a run's checkpoint) loaded, noise batches, a generator's images,
walks between two garments and two classes.

Plain NumPy in and out, the same on every backend; a generator built by prendas.models or loaded
from a file.
"""

import keras
import numpy as np

from prendas import PrendasError, artifacts
from prendas.models import NUM_CLASSES, generator_of, generator_signature, in_precision
from prendas.precision import resolve_precision


def to_uint8(images):
    """Generator output in [-1, 1] (N, 28, 28, 1) -> uint8 pixels (N, 28, 28)."""
    images = np.asarray(images, dtype=np.float32).reshape(len(images), 28, 28)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def latent_batch(n, latent_dim, seed):
    """n latent vectors drawn from N(0, 1) with a NumPy generator, the same on every backend."""
    return np.random.default_rng(seed).standard_normal((n, latent_dim), dtype=np.float32)


def balanced_labels(n):
    """Class labels 0, 1, ..., 9, 0, 1, ... for n garments: every class equally often."""
    return np.arange(n, dtype=np.int32) % NUM_CLASSES


def generate_images(generator, z, labels=None, batch_size=1024):
    """Run the generator in inference mode over latent vectors z; uint8 images (N, 28, 28).

    A conditional generator draws the classes in `labels` (N,), by default every class in turn;
    an unconditional one cannot be asked for a class.
    """
    _, conditional = generator_signature(generator)
    if labels is not None and not conditional:
        raise PrendasError("this generator was trained without labels (unconditional): it cannot draw a chosen class")
    if conditional and labels is None:
        labels = balanced_labels(len(z))
    chunks = []
    for i in range(0, len(z), batch_size):
        inputs = z[i : i + batch_size]
        if conditional:
            inputs = [inputs, np.asarray(labels[i : i + batch_size], np.int32).reshape(-1, 1)]
        chunks.append(to_uint8(generator(inputs, training=False)))
    return np.concatenate(chunks) if chunks else np.zeros((0, 28, 28), np.uint8)


def draw(generator, n, seed=None, garment=None, name="this generator"):
    """n new garments (uint8 (n, 28, 28)) from noise drawn with `seed` (None: new each time); `garment`: a class
    index, for a conditional generator (`name` says which in the error of an unconditional one)."""
    latent_dim, conditional = generator_signature(generator)
    if garment is not None and not conditional:
        raise PrendasError(f"{name} was trained without labels, so it cannot draw a chosen class "
                           "(train one with --conditional)")
    labels = None if garment is None else np.full(n, garment, np.int32)
    return generate_images(generator, latent_batch(n, latent_dim, seed), labels)


def interpolate_latents(a, b, steps):
    """`steps` latent vectors on the great circle from a to b (slerp: each stays as likely under N(0, I))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    omega = np.arccos(np.clip(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)), -1.0, 1.0))
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if omega < 1e-6:
        return ((1 - t) * a + t * b).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)).astype(np.float32)


def morph_classes(generator, z, from_class, to_class, steps):
    """One garment turning from one class into another: the same noise z, the label's embedding blended.

    Only for a conditional generator built by prendas.models (noise and embedded label are concatenated).
    """
    latent_dim, conditional = generator_signature(generator)
    if not conditional:
        raise PrendasError("this generator was trained without labels (unconditional): it has no classes to morph")
    embedding = next(layer for layer in generator.layers if isinstance(layer, keras.layers.Embedding))
    concat = next(layer for layer in generator.layers if isinstance(layer, keras.layers.Concatenate))
    # The same network from (noise, embedded label) on, so that the embedding can be blended.
    body = keras.Model(concat.input, generator.output)
    table = np.asarray(embedding.embeddings)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    blended = ((1 - t) * table[from_class] + t * table[to_class]).astype(table.dtype)  # (its ends: the rows exactly)
    noise = np.repeat(np.asarray(z, np.float32).reshape(1, latent_dim), steps, axis=0)
    return to_uint8(body([noise, blended], training=False))


# ---- saved generators ----------------------------------------------------------------------


def load_generator(path, latent_dim=None, precision=None):
    """Load a saved generator, checking that it is one: noise (latent,) [and a label] -> 28x28x1.

    A run's checkpoint (.npz) gives the generator it holds: its moving average where the run keeps one. It computes
    in `precision`, whatever precision trained it: by default its weights' (float32, float64 for a float64 run);
    mixed_bfloat16 where bfloat16 runs in hardware and speed matters more than rounding; auto: that where it does,
    else float32.
    """
    path = artifacts.check_model_file(path)
    if path.suffix == ".npz":
        model = checkpoint_generator(path)
    else:
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as e:  # Keras raises many types for a bad file; all mean the same to the user
            raise PrendasError(f"cannot load {path} as a Keras model ({type(e).__name__}: {str(e)[:200]})") from None
    shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
    in_shape, out_shape = tuple(shapes[0]), tuple(model.output_shape)
    if len(in_shape) != 2 or len(shapes) > 2 or out_shape[1:] != (28, 28, 1):
        raise PrendasError(
            f"{path} is not a generator: it maps {[tuple(s[1:]) for s in shapes]} to {out_shape[1:]}, not noise to 28x28x1"
        )
    if latent_dim is not None and generator_signature(model)[0] != latent_dim:
        raise PrendasError(f"{path} takes a latent vector of size {in_shape[1]}, not {latent_dim} (--latent-dim)")
    return in_precision(model, model.weights[0].dtype if precision is None else resolve_precision(precision))


def checkpoint_generator(path):
    """The generator a run's checkpoint holds, to draw with: its moving average where the run keeps one, built
    from the checkpoint's settings and given its weights."""
    from prendas.config import TrainConfig

    meta, _, saved = artifacts.load_checkpoint(path)
    config = TrainConfig.from_dict(meta["config"])
    generator = generator_of(config)
    group = "ema_generator" if "ema_generator" in saved else "generator"
    artifacts.restore_variables({group: generator.variables}, saved, path)
    return generator


def checkpoint_about(path):
    """What a checkpoint's generator is, read without its arrays: the checkpoint, the run's tag and record, the
    epochs done and which weights draw (the moving average or the generator as trained)."""
    meta, names = artifacts.checkpoint_meta(path)
    averaged = any(name.startswith("ema_generator/") for name in names)
    return {"checkpoint": str(path), "tag": meta.get("tag"), "epoch": meta.get("epochs_done", len(meta.get("history", []))),
            "weights": "moving average" if averaged else "generator as trained",
            "run": {key: meta.get(key) for key in ("tag", "data", "config", "training_seconds")}}
