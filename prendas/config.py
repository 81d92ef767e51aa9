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
    "steps_per_execution": (1, 10_000),
}
_LR_FIELDS = ("g_lr", "d_lr")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DEVICES = ("1", "all")
_CHOICES = {"loss": ("bce", "wgan-gp", "hinge"), "arch": ("dcgan", "deep"), "precision": PRECISIONS, "devices": DEVICES}
_BOOL_FIELDS = ("deterministic", "spectral_norm", "conditional", "xla")

# What each loss does when --d-steps and the Adam betas are left unset: the DCGAN tutorial for bce
# (Keras's Adam defaults), the WGAN-GP paper (Gulrajani et al. 2017: 5 critic steps, betas 0 and
# 0.9) and SNGAN's standard CNN setting for hinge (Miyato et al. 2018: 1 step, betas 0.5 and 0.999).
LOSS_DEFAULTS = {
    "bce": {"d_steps": 1, "beta_1": 0.9, "beta_2": 0.999},
    "wgan-gp": {"d_steps": 5, "beta_1": 0.0, "beta_2": 0.9},
    "hinge": {"d_steps": 1, "beta_1": 0.5, "beta_2": 0.999},
}
GP_WEIGHT = 10.0  # the gradient penalty's weight (the WGAN-GP paper's lambda)

# `train --preset NAME`: named recipes that fill in whatever the command line leaves unset. "tutorial"
# is TensorFlow's DCGAN (the defaults, the notebook's story); "best" is the recipe that measured best
# at equal budget (RESULTS.md; the README's Recipes section gives the numbers and the machine).
PRESETS = {
    "tutorial": {},
    "best": {"loss": "hinge", "spectral_norm": True, "ema": 0.999, "conditional": True, "class_loss": 1.0,
             "g_lr": 2e-4, "d_lr": 2e-4},
}


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
    loss: str = "bce"  # bce (non-saturating, the tutorial's), wgan-gp or hinge
    d_steps: int | None = None  # discriminator steps per generator step (None: the loss's default)
    beta_1: float | None = None  # Adam's betas for both networks (None: the loss's defaults)
    beta_2: float | None = None
    spectral_norm: bool = False  # spectral normalization on every discriminator layer
    ema: float = 0.0  # decay of the generator's moving average for samples and saved models (0: off)
    arch: str = "dcgan"  # dcgan (the tutorial's networks) or deep (one more block, more filters)
    conditional: bool = False  # both networks see the class label: ask for a given garment
    class_loss: float = 0.0  # weight of the discriminator's auxiliary classifier (AC-GAN; conditional only; 0: off)
    # How the steps run (the same results, at another speed; `precision` changes the numbers a little).
    steps_per_execution: int = 1  # training steps per compiled call: fewer round trips to the device
    xla: bool = False  # compile the TensorFlow step with XLA (JAX always is)
    precision: str = "float32"  # or mixed_bfloat16 / mixed_float16 (float16 with loss scaling)
    devices: str = "1"  # "all": data-parallel over every GPU (the batch split, the same result)

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
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise PrendasError(f"{name} must be true or false, got {getattr(self, name)!r} (--{_flag(name)})")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise PrendasError(
                    f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r} (--{_flag(name)})"
                )
        if self.d_steps is not None and (
            isinstance(self.d_steps, bool) or not isinstance(self.d_steps, int) or not 1 <= self.d_steps <= 100
        ):
            raise PrendasError(f"d_steps must be an integer from 1 to 100, got {self.d_steps!r} (--d-steps)")
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1
            ):
                raise PrendasError(f"{name} must be a number in [0, 1), got {value!r} (--{_flag(name)})")
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not (
            self.ema == 0 or 0.5 <= self.ema < 1
        ):
            raise PrendasError(f"ema must be 0 (off) or a decay in [0.5, 1), got {self.ema!r} (--ema)")
        if isinstance(self.class_loss, bool) or not isinstance(self.class_loss, (int, float)) or not (
            0 <= self.class_loss <= 10
        ):
            raise PrendasError(f"class_loss must be a weight from 0 (off) to 10, got {self.class_loss!r} (--class-loss)")
        if self.class_loss and not self.conditional:
            raise PrendasError("--class-loss needs --conditional: the classifier learns the classes of labelled images")

    def resolved(self, name):
        """d_steps, beta_1 or beta_2 as the run uses it: the value given, else the loss's default."""
        value = getattr(self, name)
        return LOSS_DEFAULTS[self.loss][name] if value is None else value

    @property
    def uses_test_images(self):
        """True when the run needs more images than the training split holds."""
        return self.images > TRAIN_IMAGES

    def recipe(self):
        """The settings that shape the networks and their training, in a few words ('hinge+sn+ema0.999')."""
        parts = [self.loss] + (["sn"] if self.spectral_norm else []) + ([f"ema{self.ema:g}"] if self.ema else [])
        parts += ([self.arch] if self.arch != "dcgan" else []) + (["cond"] if self.conditional else [])
        parts += [f"ac{self.class_loss:g}"] if self.class_loss else []
        parts += {"float32": [], "mixed_bfloat16": ["bf16"], "mixed_float16": ["fp16"]}[self.precision]
        # The sizes and rates, where they are not the defaults (the batch size has its own column in RESULTS.md).
        defaults = TrainConfig()
        parts += [f"z{self.latent_dim}"] if self.latent_dim != defaults.latent_dim else []
        if (self.g_lr, self.d_lr) != (defaults.g_lr, defaults.d_lr):
            parts += [f"lr{self.g_lr:g}"] if self.g_lr == self.d_lr else [f"glr{self.g_lr:g}", f"dlr{self.d_lr:g}"]
        return "+".join(parts)

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
