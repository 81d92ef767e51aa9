"""Training settings: one dataclass, validated in one place, saved with every run."""

import dataclasses
import math

from prendas import PrendasError

# Fashion-MNIST holds 60,000 training and 10,000 test images.
TRAIN_IMAGES = 60_000
ALL_IMAGES = 70_000

# Inclusive ranges for the numeric settings; the messages name the command-line flag.
_INT_RANGES = {
    "epochs": (1, 100_000),
    "batch_size": (1, 65_536),
    "images": (1, ALL_IMAGES),
    "latent_dim": (1, 4_096),
    "seed": (0, 2**31 - 1),
    "checkpoint_every": (1, 100_000),
    "eval_every": (0, 100_000),
    "eval_samples": (100, 60_000),
}
_LR_FIELDS = ("g_lr", "d_lr")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are TensorFlow's DCGAN tutorial."""

    epochs: int = 50
    batch_size: int = 256
    images: int = TRAIN_IMAGES  # N <= 60,000 come from the training split; more add test images
    latent_dim: int = 100
    g_lr: float = 1e-4  # Adam learning rate of the generator
    d_lr: float = 1e-4  # Adam learning rate of the discriminator
    seed: int = 0  # weights, noise, subset and shuffling all follow from it
    checkpoint_every: int = 1  # epochs between resume checkpoints (one is always written at the end)
    out: str = "."  # models/, images/ and checkpoints/ are created under it
    deterministic: bool = False  # deterministic kernels: bit-exact resume, a little slower
    eval_every: int = 0  # epochs between quality measurements during training (0: none)
    eval_samples: int = 2_000  # garments drawn for each of those measurements

    def __post_init__(self):
        for name, (low, high) in _INT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise PrendasError(
                    f"{name} must be an integer from {low} to {high}, got {value!r} (--{_flag(name)})"
                )
        for name in _LR_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and 0 < value <= 1
            ):
                raise PrendasError(f"{name} must be a number in (0, 1], got {value!r} (--{_flag(name)})")
        if not isinstance(self.out, str) or not self.out:
            raise PrendasError(f"out must be a folder name, got {self.out!r} (--out)")
        if not isinstance(self.deterministic, bool):
            raise PrendasError(f"deterministic must be true or false, got {self.deterministic!r}")

    @property
    def uses_test_images(self):
        """True when the run needs more images than the training split holds."""
        return self.images > TRAIN_IMAGES

    def replace(self, **changes):
        """A copy with some settings changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """The inverse of to_dict; unknown keys are an error (a file from another version)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PrendasError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**values)


def _flag(name):
    return name.replace("_", "-")
