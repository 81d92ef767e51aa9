"""Training settings: one dataclass whose fields each say once their default, range, flag and help.

`TrainConfig` validates itself from that metadata, the command line (`prendas train`) is built from
it, and every run saves it. RESUME_OPTIONS lists the settings a resumed run may change.
"""

import dataclasses
import math

from prendas import PrendasError

# Fashion-MNIST holds 60,000 training and 10,000 test images.
TRAIN_IMAGES = 60_000
ALL_IMAGES = 70_000

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "float64", "auto")
LOSSES = ("bce", "wgan-gp", "hinge", "rpgan")

# What each loss does when --d-steps and the Adam betas are left unset: the DCGAN tutorial for bce
# (Keras's Adam defaults), the WGAN-GP paper (Gulrajani et al. 2017: 5 critic steps, betas 0 and
# 0.9) and SNGAN's standard CNN setting for hinge (Miyato et al. 2018: 1 step, betas 0.5 and 0.999).
LOSS_DEFAULTS = {
    "bce": {"d_steps": 1, "beta_1": 0.9, "beta_2": 0.999},
    "wgan-gp": {"d_steps": 5, "beta_1": 0.0, "beta_2": 0.9},
    "hinge": {"d_steps": 1, "beta_1": 0.5, "beta_2": 0.999},
    "rpgan": {"d_steps": 1, "beta_1": 0.0, "beta_2": 0.99},  # R3GAN's (its beta_2 ends at 0.99)
}
GP_WEIGHT = 10.0  # the gradient penalty's weight (the WGAN-GP paper's lambda)
GAMMA_FLOOR = 0.1  # --gamma-kimg: R1 and R2 fall to this share of --r1 and --r2 (R3GAN's schedule)
EMA_WARMUP = 10.0  # --ema: the decay is min(ema, (1 + t) / (EMA_WARMUP + t)) after t generator steps
TUTORIAL_DROPOUT = 0.3  # the tutorial's discriminator drops 30%; WGAN-GP's critic and hinge's discriminator none

# `train --preset NAME`: named recipes that fill in whatever the command line leaves unset. "tutorial"
# is TensorFlow's DCGAN (the defaults, the notebook's story); "best" is the recipe that measured best
# at equal budget (docs/recipes.md gives the numbers and the machine).
# DiffAugment policies (prendas.augment): which transformations the discriminator's inputs go through.
AUGMENTS = ("none", "translation", "cutout", "translation,cutout")

# best: R3GAN's relativistic loss with R1 and R2 on the hinge recipe's networks at half the tutorial's width, the
# penalties every 4th step (lazy regularization), bfloat16 where the hardware computes it and four times SNGAN's
# learning rate: the recipe that reached the shipped quality soonest in wall-clock (docs/recipes.md); best-w32: that at
# the tutorial's width and twice SNGAN's rate (--preset best until the width was measured, the recipe of the shipped
# generator); rpgan-lazy: that at 2e-4 (the best before it); rpgan: that with the penalties at every step, in
# float32 (the best until 2026-12-06); sngan: those networks with the hinge loss (SNGAN's).
_RPGAN = {"loss": "rpgan", "r1": 0.05, "r2": 0.05, "spectral_norm": True, "ema": 0.999, "conditional": True,
          "class_loss": 1.0, "g_lr": 2e-4, "d_lr": 2e-4}
_RPGAN_LAZY = {**_RPGAN, "reg_every": 4, "precision": "auto"}
_BEST_W32 = {**_RPGAN_LAZY, "g_lr": 4e-4, "d_lr": 4e-4}
PRESETS = {
    "tutorial": {},
    "best": {**_BEST_W32, "width": 16, "g_lr": 8e-4, "d_lr": 8e-4},
    "best-w32": _BEST_W32,
    "rpgan-lazy": _RPGAN_LAZY,
    "rpgan": _RPGAN,
    "sngan": {"loss": "hinge", "spectral_norm": True, "ema": 0.999, "conditional": True, "class_loss": 1.0,
              "g_lr": 2e-4, "d_lr": 2e-4},
}


def _integer(low, high):
    return (f"an integer from {low} to {high}",
            lambda x: isinstance(x, int) and not isinstance(x, bool) and low <= x <= high)


def _number(words, inside):
    return (words, lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and inside(x))


def _setting(default, help, check=None, *, choices=None, optional=False, resume=False, negatable=False, metavar=None,
             const=None):
    """A field of TrainConfig: its default, its help, and what a valid value is (check: (words, test)).

    optional: None is valid (the loss's default applies); resume: a resumed run may change it;
    negatable: a switch with a --no- form (over a preset); const: the value of the flag given without one.
    Every setting has a flag, --NAME.
    """
    if choices:
        check = (f"one of {', '.join(choices)}", lambda x: x in choices)
    elif isinstance(default, bool):
        check = ("true or false", lambda x: isinstance(x, bool))
    meta = {"help": help, "check": check, "choices": choices, "optional": optional, "resume": resume,
            "negatable": negatable, "metavar": metavar, "const": const}
    return dataclasses.field(default=default, metadata=meta)


_RATE = _number("a number in (0, 1]", lambda x: 0 < x <= 1)
_BETA = _number("a number in [0, 1)", lambda x: 0 <= x < 1)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are TensorFlow's DCGAN tutorial."""

    epochs: int = _setting(50, "epochs to train; with --resume, epochs to add", _integer(1, 100_000))
    minutes: float = _setting(0.0, "train for at most about M minutes: whole epochs, stopping after the last one expected "
                              "to end within M minutes of this session's start (at least one; at most --epochs), its "
                              "files tagged with the epochs it did; --resume continues it exactly, with a budget of "
                              "its own if given one (0: every --epochs)",
                              _number("0 (off) or from 0.1 to 1000000 minutes", lambda x: x == 0 or 0.1 <= x <= 1e6),
                              resume=True, metavar="M")
    batch_size: int = _setting(256, "images per step", _integer(1, 65_536))
    images: int = _setting(TRAIN_IMAGES, f"training images (default {TRAIN_IMAGES:,}, the whole training split); up "
                           f"to {ALL_IMAGES:,} adds test images", _integer(1, ALL_IMAGES))
    latent_dim: int = _setting(100, "size of the noise vector", _integer(1, 4_096))
    g_lr: float = _setting(1e-4, "Adam learning rate of the generator only", _RATE)
    d_lr: float = _setting(1e-4, "Adam learning rate of the discriminator only", _RATE)
    seed: int = _setting(0, "random seed: weights, noise, subset and shuffling all follow from it", _integer(0, 2**31 - 1))
    checkpoint_every: int = _setting(1, "epochs between checkpoints (one is always written at the end)",
                                     _integer(1, 100_000), resume=True)
    out: str = _setting(".", "folder for models/, images/ and checkpoints/ (default: the current folder; with "
                        "--resume, the folder that holds the checkpoint's checkpoints/)",
                        ("a folder name", lambda x: isinstance(x, str) and bool(x)), resume=True)
    deterministic: bool = _setting(False, "deterministic kernels (bit-exact resume, a little slower)", resume=True)
    eval_every: int = _setting(0, "measure FID, precision, recall and class balance every K epochs (0: never); "
                               "recorded in run_TAG.json and drawn in images/quality_TAG.png",
                               _integer(0, 100_000), resume=True)
    eval_samples: int = _setting(2_000, "garments drawn for each of those measurements", _integer(100, 60_000))
    keep_best: str = _setting("fid", "with --eval-every: keep the generator that measured best so far by this figure "
                              "(lowest FID, highest recall or coverage) as models/generator_best_TAG.keras, with its "
                              "evaluation and checkpoints/checkpoint_best_TAG.npz to resume from (none: keep no best)",
                              choices=("fid", "recall", "coverage", "none"), resume=True)
    loss: str = _setting("bce", "adversarial loss: bce (the tutorial's), wgan-gp, hinge, or rpgan (R3GAN's "
                         "relativistic pairing loss; give it --r1 and --r2)", choices=LOSSES)
    r1: float = _setting(0.0, "weight gamma of the zero-centred gradient penalty at real images, gamma/2 "
                         "E||grad D(real)||^2 (R1; R3GAN: 0.05 for CIFAR-10) (0: off)",
                         _number("a weight from 0 (off) to 1000", lambda x: 0 <= x <= 1000), metavar="GAMMA")
    r2: float = _setting(0.0, "the same penalty at the generator's fakes (R2) (0: off)",
                         _number("a weight from 0 (off) to 1000", lambda x: 0 <= x <= 1000), metavar="GAMMA")
    gamma_kimg: float = _setting(0.0, "R1 and R2 fall along a cosine to a tenth of --r1 and --r2 over K thousand "
                                 "images, then stay there (R3GAN's schedule) (0: constant)",
                                 _number("0 (constant) or from 1 to 10000000 thousand images",
                                         lambda x: x == 0 or 1 <= x <= 10_000_000), metavar="K")
    reg_every: int = _setting(1, "R1 and R2 every K discriminator steps, weighted K times, with the discriminator's Adam "
                              "adjusted as StyleGAN2 does (lazy regularization: a step without them costs less) "
                              "(1: every step)", _integer(1, 64), metavar="K")
    augment: str = _setting("none", "DiffAugment: every image the discriminator sees, real or fake, shifted by up to "
                            "4 pixels (translation) and/or with a 14-pixel square erased (cutout), the generator "
                            "learning through it", choices=AUGMENTS)
    d_steps: int | None = _setting(None, "discriminator steps per generator step (default: 5 for wgan-gp, else 1)",
                                   _integer(1, 100), optional=True)
    beta_1: float | None = _setting(None, "Adam's beta_1 (default: 0.9 for bce, 0 for wgan-gp and rpgan, 0.5 for hinge)", _BETA,
                                    optional=True)
    beta_2: float | None = _setting(None, "Adam's beta_2 (default: 0.999, 0.9 for wgan-gp, 0.99 for rpgan)", _BETA, optional=True)
    spectral_norm: bool = _setting(False, "spectral normalization on every discriminator layer", negatable=True)
    ema: float = _setting(0.0, "decay of the generator's moving average, used for samples, saved models and "
                          "evaluation, e.g. 0.999 (0: off)",
                          _number("0 (off) or a decay in [0.5, 1)", lambda x: x == 0 or 0.5 <= x < 1))
    ema_kimg: float = _setting(0.0, "a moving average whose half-life is K thousand images, ramped up as 5%% of the "
                               "images seen (StyleGAN2-ADA), in place of --ema's fixed decay (0: off)",
                               _number("0 (off) or a half-life from 0.1 to 100000 thousand images",
                                       lambda x: x == 0 or 0.1 <= x <= 100_000), metavar="K")
    arch: str = _setting("dcgan", "networks: dcgan (the tutorial's), deep (one more block, more filters; for a GPU) "
                         "or resnet (R3GAN's residual networks without normalization)", choices=("dcgan", "deep", "resnet"))
    width: int = _setting(32, "the networks' width: with --arch resnet the channels of its narrowest stage (the "
                          "widest has 4x); with dcgan and deep every layer's filters scale by WIDTH/32 (32: the "
                          "tutorial's)",
                          _integer(4, 1024))
    conditional: bool = _setting(False, "train with the class labels, so that `generate --class` can ask for a "
                                 "garment", negatable=True)
    class_loss: float = _setting(0.0, "with --conditional: the discriminator also learns to name the class of real "
                                 "garments, and the generator to draw ones it names as asked (AC-GAN's auxiliary "
                                 "classifier), e.g. 1 (0: off)",
                                 _number("a weight from 0 (off) to 10", lambda x: 0 <= x <= 10), metavar="WEIGHT")
    # How the steps run (the same results, at another speed; `precision` changes the numbers a little).
    steps_per_execution: int = _setting(1, "training steps per compiled call; more saves round trips when steps "
                                        "are short (a GPU)", _integer(1, 10_000), resume=True)
    xla: bool = _setting(False, "compile the TensorFlow training step with XLA (JAX always is)", resume=True)
    precision: str = _setting("float32", "float32, mixed_bfloat16, or mixed_float16 (with loss scaling): for GPUs "
                              "with fast 16-bit arithmetic; on a CPU, measure with `bench` first. auto: mixed_bfloat16 "
                              "where bfloat16 runs in hardware (a GPU of compute capability 8.0 or more, a CPU with "
                              "AVX512_BF16 or AMX), else float32, decided again by each process that trains (a resumed "
                              "run too) and recorded. float64: slower, for comparing two computations where rounding "
                              "cannot decide (the tests do; on JAX, start Python with JAX_ENABLE_X64=1). Saved models "
                              "compute in float32 whatever trained them", choices=PRECISIONS, resume=True)
    tensorboard: str | None = _setting(None, "write TensorBoard logs to DIR as the run goes (without DIR: OUT/logs/TAG): "
                                       "losses, images/s, --eval-every's figures, the sample grid, the settings; a run "
                                       "that logged goes on logging in its folder when resumed, unless given another "
                                       "DIR. Needs the tensorboard package",
                                       ("a folder name", lambda x: isinstance(x, str)), optional=True, resume=True,
                                       metavar="DIR", const="")
    tensorboard_every: int = _setting(50, "with --tensorboard: steps between its points within an epoch (0: once an "
                                      "epoch)", _integer(0, 1_000_000), resume=True, metavar="STEPS")
    devices: str = _setting("1", "1 or all: train data-parallel on every GPU (TensorFlow's MirroredStrategy, JAX's "
                            "DataParallel), each taking a share of the batch; with TF_CONFIG set, on every machine "
                            "it names (MultiWorkerMirroredStrategy)", choices=("1", "all"), resume=True)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, meta = getattr(self, field.name), field.metadata
            if meta["optional"] and value is None:
                continue
            words, valid = meta["check"]
            if not valid(value):
                raise PrendasError(f"{field.name} must be {words}, got {value!r} (--{flag(field.name)})")
        if self.arch == "resnet" and self.spectral_norm:
            raise PrendasError("--arch resnet trains without normalization layers (R3GAN): leave out --spectral-norm")
        if self.ema and self.ema_kimg:
            raise PrendasError("--ema and --ema-kimg are two ways to set the average: give one")
        if self.reg_every > 1 and not (self.r1 or self.r2):
            raise PrendasError("--reg-every spaces out the penalties: give --r1 and/or --r2 as well")
        if self.gamma_kimg and not (self.r1 or self.r2):
            raise PrendasError("--gamma-kimg schedules the penalties' weights: give --r1 and/or --r2 as well")
        if self.class_loss and not self.conditional:
            raise PrendasError("--class-loss needs --conditional: the classifier learns the classes of labelled images")

    def d_adam(self):
        """The discriminator's Adam settings (learning_rate, beta_1, beta_2). With --reg-every K the penalties come
        every K steps, and StyleGAN2 (Karras et al. 2020, appendix B) scales the learning rate and raises both betas
        by K / (K + 1), so that the regularized steps' moments follow the same time scale."""
        c = self.reg_every / (self.reg_every + 1) if self.reg_every > 1 else 1.0
        return self.d_lr * c, self.resolved("beta_1") ** c, self.resolved("beta_2") ** c

    def resolved(self, name):
        """d_steps, beta_1 or beta_2 as the run uses it: the value given, else the loss's default."""
        value = getattr(self, name)
        return LOSS_DEFAULTS[self.loss][name] if value is None else value

    @property
    def averaged(self):
        """Whether the run keeps a moving average of the generator (--ema or --ema-kimg)."""
        return bool(self.ema or self.ema_kimg)

    @property
    def uses_test_images(self):
        """True when the run needs more images than the training split holds."""
        return self.images > TRAIN_IMAGES

    def recipe(self):
        """The settings that shape the networks and their training, in a few words ('hinge+sn+ema0.999')."""
        parts = [self.loss] + [f"{name}{getattr(self, name):g}" for name in ("r1", "r2") if getattr(self, name)]
        parts += (["sn"] if self.spectral_norm else []) + ([f"ema{self.ema:g}"] if self.ema else [])
        parts += [f"emak{self.ema_kimg:g}"] if self.ema_kimg else []
        parts += [f"gk{self.gamma_kimg:g}"] if self.gamma_kimg else []
        parts += [f"reg{self.reg_every}"] if self.reg_every > 1 else []
        parts += [f"da-{self.augment.replace(',', '-')}"] if self.augment != "none" else []
        parts += ([self.arch] if self.arch != "dcgan" else []) + ([f"w{self.width}"] if self.width != 32 else [])
        parts += ["cond"] if self.conditional else []
        parts += [f"ac{self.class_loss:g}"] if self.class_loss else []
        parts += {"float32": [], "mixed_bfloat16": ["bf16"], "mixed_float16": ["fp16"], "float64": ["f64"],
                  "auto": ["auto"]}[self.precision]
        # The sizes and rates, where they are not the defaults (the batch size has its own column in RESULTS.md).
        defaults = TrainConfig()
        parts += [f"z{self.latent_dim}"] if self.latent_dim != defaults.latent_dim else []
        if (self.g_lr, self.d_lr) != (defaults.g_lr, defaults.d_lr):
            parts += [f"lr{self.g_lr:g}"] if self.g_lr == self.d_lr else [f"glr{self.g_lr:g}", f"dlr{self.d_lr:g}"]
        return "+".join(parts)

    @classmethod
    def preset(cls, name, **settings):
        """A config from the preset `name` (PRESETS: 'tutorial', 'best', 'best-w32', 'rpgan-lazy', 'rpgan', 'sngan'),
        the settings given winning over it: TrainConfig.preset("best", epochs=5). What `train --preset` does."""
        return cls(**preset_settings(name, settings))

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


def check_bench(batch_size, steps, repeats, steps_per_execution):
    """`bench`'s numbers, checked before anything loads (by the command line, and by run_benchmark for Python).
    Its batches are whole batches of the 60,000 training images, hence a batch-size limit of its own."""
    limits = {"batch_size": (batch_size, TRAIN_IMAGES), "steps": (steps, 100_000), "repeats": (repeats, 1000),
              "steps_per_execution": (steps_per_execution, 10_000)}
    for name, (value, high) in limits.items():
        if not (isinstance(value, int) and 1 <= value <= high):
            raise PrendasError(f"--{flag(name)} must be from 1 to {high}, got {value}")
    if steps % steps_per_execution:
        raise PrendasError(f"--steps ({steps}) must be a multiple of --steps-per-execution ({steps_per_execution})")


def preset_settings(name, given):
    """The settings of preset `name` with those `given` (a dict) over them. Without labels (conditional=False given),
    the preset's classifier goes with them, unless class_loss is given too."""
    if name not in PRESETS:
        raise PrendasError(f"unknown preset {name!r}: one of {', '.join(PRESETS)}")
    merged = {**PRESETS[name], **given}
    if not merged.get("conditional") and "class_loss" not in given:
        merged.pop("class_loss", None)
    return merged


# The settings a resumed run may change (how the steps run, where and how often it writes, evaluation);
# everything else is the checkpoint's.
RESUME_OPTIONS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resume"])


def flag(name):
    """A setting's command-line flag, without the dashes: batch_size -> batch-size."""
    return name.replace("_", "-")


def add_arguments(parser):
    """One command-line flag for each setting of TrainConfig, with its help, choices and default."""
    import argparse
    import types

    for field in dataclasses.fields(TrainConfig):
        meta, default, help = field.metadata, field.default, field.metadata["help"]
        if default is not None and not isinstance(default, bool) and "default" not in help:
            help += f" (default {format(default, {int: ',', float: 'g'}.get(type(default), ''))})"
        if isinstance(default, bool):
            kwargs = {"action": argparse.BooleanOptionalAction if meta["negatable"] else "store_true"}
            help += f" (--no-{flag(field.name)}: off, over a preset)" if meta["negatable"] else ""
        else:
            kwargs = {"choices": meta["choices"]} if meta["choices"] else {
                "type": field.type.__args__[0] if isinstance(field.type, types.UnionType) else field.type}
        kwargs.update({"metavar": meta["metavar"]} if meta["metavar"] else {})
        kwargs.update({"nargs": "?", "const": meta["const"]} if meta["const"] is not None else {})
        parser.add_argument("--" + flag(field.name), help=help, default=None, **kwargs)


def tensorboard_installed():
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def check_installed(config):
    """Fail before anything loads when a setting needs a package that is not installed (--tensorboard)."""
    if config.tensorboard is not None and not tensorboard_installed():
        raise PrendasError('--tensorboard needs the tensorboard package, which is not installed: pip install '
                           'tensorboard (or pip install "prendas[tensorboard]")')
