"""Command line: python -m prendas {train,generate,evaluate,results,evaluator,bench} ... (--help on each).

A user's mistake prints one line on stderr and exits with status 2, having written nothing.
"""

import argparse
import os
import sys
from pathlib import Path

from prendas import PrendasError, command
from prendas.config import (
    PRECISIONS,
    PRESETS,
    RESUME_OPTIONS,
    TrainConfig,
    add_arguments,
    check_bench,
    check_installed,
    flag,
    preset_settings,
)
from prendas.data import CLASS_NAMES

# What `generate` and `evaluate` may draw in, and why float32 is the default (prendas.sampling.load_generator).
DRAW_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
PRECISION_HELP = ("what the generator computes in (default float32, whatever precision trained it); mixed_bfloat16 is "
                  "faster where bfloat16 runs in hardware (a GPU of compute capability 8.0 or more, a CPU with "
                  "AVX512_BF16 or AMX), slower elsewhere, and rounds differently; auto: that where it runs in hardware, "
                  "else float32")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print the whole usage; one line that points at --help is kinder.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser():
    defaults = TrainConfig()
    parser = _Parser(prog=command(), description="A DCGAN that draws garments (Fashion-MNIST).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = commands.add_parser(
        "train",
        help="train a GAN (or continue one with --resume)",
        description="Train the DCGAN; writes OUT/models, OUT/images and OUT/checkpoints, tagged "
        "YYYY-MM-DD-HHMM_{E}ep_{N}imgs.",
    )
    add_arguments(t)  # one flag for each setting of TrainConfig, with its help and range (prendas/config.py)
    t.add_argument("--lr", type=float, help=f"learning rate of both Adam optimizers (default {defaults.g_lr:g})")
    t.add_argument("--preset", choices=tuple(PRESETS), help="a named recipe for what the other flags leave unset: "
                   "tutorial (the defaults), best (" + ", ".join(f"--{flag(k)} {v}".replace(" True", "")
                   for k, v in PRESETS["best"].items()) + ": the shipped quality soonest, see docs/recipes.md), "
                   "best-w32 (the same at the tutorial's width, --width 32, and --lr 4e-4: the shipped generator's recipe, "
                   "64 epochs), "
                   "rpgan-lazy (that at --lr 2e-4), "
                   "rpgan (that with R1 and R2 at every step, in float32) "
                   "or sngan (the hinge loss in place of rpgan, without --r1/--r2). From Python: "
                   "TrainConfig.preset(NAME, **settings)")
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue from OUT/checkpoints/checkpoint_TAG.npz, or from "
                   "the newest checkpoint in a run's folder OUT (it says which)")

    g = commands.add_parser(
        "generate",
        help="draw garments with a saved generator",
        description="Sample a grid of garments from a saved generator (models/generator_TAG.keras).",
    )
    g.add_argument("--model", required=True, help="a generator_TAG.keras file, or a run's checkpoint_TAG.npz (a run "
                   "stopped before its end: the generator it holds, its moving average where it keeps one)")
    g.add_argument("--n", type=int, default=25, help="how many garments (default 25, at most 10000)")
    g.add_argument("--out", default="generated.png", help="PNG file to write (default generated.png)")
    g.add_argument("--seed", type=int, default=None, help="seed of the noise (default: a new draw each time)")
    g.add_argument("--latent-dim", type=int, help="expected latent size; an error if the model's differs")
    g.add_argument("--precision", choices=DRAW_PRECISIONS, default="float32", help=PRECISION_HELP)
    g.add_argument("--class", dest="garment", metavar="CLASS", help="the garment to draw, by name or number (0-9), "
                   "for a generator trained with --conditional: " + ", ".join(CLASS_NAMES))
    v = commands.add_parser(
        "evaluate",
        help="score a saved generator: FID, KID, precision/recall, coverage, class balance",
        description="Score a generator against the 10,000 test images, with 10,000 real training images as the "
        "floor; prints a table and writes JSON (default: evaluation_TAG.json beside the model).",
    )
    v.add_argument("--model", required=True, help="a generator_TAG.keras file, or a run's checkpoint_TAG.npz (the "
                   "generator it holds; the JSON goes beside it as evaluation_checkpoint_TAG_epochE.json)")
    v.add_argument("--n", type=int, default=10_000, help="how many garments to draw (default 10000)")
    v.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    v.add_argument("--json", default=None, help="where to write the JSON (default: beside the model)")
    v.add_argument("--precision", choices=DRAW_PRECISIONS, default="float32", help=PRECISION_HELP)

    r = commands.add_parser(
        "results",
        help="write the results table (RESULTS.md) from every run's JSON",
        description="Collect every complete run (FOLDER/**/models/run_TAG.json) and its evaluation "
        "(evaluation_TAG.json, from `prendas evaluate`) into one markdown table with thumbnails.",
    )
    r.add_argument("folders", nargs="*", default=["."], help="folders to search (default: the current one)")
    r.add_argument("--out", default="RESULTS.md", help="the markdown file to write (default RESULTS.md)")

    b = commands.add_parser(
        "bench",
        help="training speed: the project's step beside TensorFlow's tutorial loop",
        description="Measure training throughput (images/s) of the project's step and, alternating in the same "
        "process, of a plain loop written as TensorFlow's DCGAN tutorial writes it: same networks, batch and "
        "images. Prints medians, their ratio, FLOPs per image, achieved FLOP/s and peak memory.",
    )
    b.add_argument("--batch-size", type=int, default=256, help="images per step (default 256)")
    b.add_argument("--steps", type=int, default=10, help="steps in each timed run (default 10; on a GPU, a few hundred)")
    b.add_argument("--repeats", type=int, default=3, help="timed runs of each loop, alternating (default 3)")
    b.add_argument("--steps-per-execution", type=int, default=1, help="the project's steps per compiled call (default 1)")
    b.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the project's precision (default: the preset's, else float32; auto: mixed_bfloat16 where "
                   "bfloat16 runs in hardware)")
    b.add_argument("--xla", action="store_true", help="compile the project's step with XLA")
    b.add_argument("--backend", choices=("tensorflow", "jax"), default=None,
                   help="Keras backend (default: KERAS_BACKEND, else tensorflow); on jax the project's step runs alone")
    b.add_argument("--preset", choices=tuple(PRESETS), default="tutorial",
                   help="the recipe the project's step trains (default tutorial: the same networks as the tutorial's loop)")
    b.add_argument("--json", default=None, help="also write the figures to this JSON file")

    e = commands.add_parser(
        "evaluator",
        help="the feature network behind the quality figures",
        description="Show the shipped Fashion-MNIST feature network's recipe and accuracy, or retrain it "
        "(--train) from its fixed seed on the 60,000 training images.",
    )
    e.add_argument("--train", action="store_true", help="train it again and overwrite the shipped weights")
    e.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    e.add_argument("--out", default=None, help="where to write the .keras file (default: the shipped one)")
    return parser


def _check_json(path):
    if path is not None and not path.endswith(".json"):
        raise PrendasError(f"--json must name a .json file, got {path}")
    if path is not None and not Path(path).parent.is_dir():
        raise PrendasError(f"--json: folder {Path(path).parent} does not exist")
    if path is not None:
        from prendas.artifacts import check_writable

        check_writable(Path(path).parent, "--json")


def _evaluate(args):
    from prendas.artifacts import check_model_file

    # Everything a user can get wrong is checked before TensorFlow loads.
    if not 100 <= args.n <= 60_000:
        raise PrendasError(f"--n must be from 100 to 60000, got {args.n}")
    if args.seed < 0:
        raise PrendasError(f"--seed must be 0 or more, got {args.seed}")
    _check_json(args.json)
    check_model_file(args.model)
    from prendas.evaluate import evaluate_model_file

    evaluate_model_file(args.model, n=args.n, seed=args.seed, json_path=args.json, precision=args.precision)


def _results(args):
    from prendas.results import write_results

    if not args.out.endswith(".md"):
        raise PrendasError(f"--out must name a .md file, got {args.out}")
    from prendas.artifacts import check_writable

    check_writable(Path(args.out).parent, "--out")
    runs = write_results(args.folders, args.out)
    print(f"wrote {args.out}: {len(runs)} runs, {sum(1 for _, e, _ in runs if e)} evaluated")


def _bench(args):
    check_bench(args.batch_size, args.steps, args.repeats, args.steps_per_execution)
    _check_json(args.json)
    if args.backend:
        if "keras" in sys.modules and sys.modules["keras"].backend.backend() != args.backend:
            raise PrendasError(f"--backend {args.backend}: Keras is already running on {sys.modules['keras'].backend.backend()}")
        os.environ["KERAS_BACKEND"] = args.backend
    from prendas.bench import run_benchmark

    result = run_benchmark(batch_size=args.batch_size, steps=args.steps, repeats=args.repeats,
                           steps_per_execution=args.steps_per_execution, xla=args.xla, precision=args.precision,
                           preset=args.preset)
    if args.json:
        from prendas.artifacts import write_json

        write_json(args.json, result)
        print(f"saved {args.json}")


def _evaluator(args):
    from prendas import features

    if not args.train:
        record = features.load_record()
        print(f"{features.WEIGHTS}: test accuracy {record['test_accuracy']:.4f}, recipe {record['recipe']}")
        return
    epochs = features.RECIPE["epochs"] if args.epochs is None else args.epochs
    if not 1 <= epochs <= 1000:
        raise PrendasError(f"--epochs must be from 1 to 1000, got {epochs}")
    out = Path(args.out) if args.out else features.WEIGHTS
    if out.suffix != ".keras":
        raise PrendasError(f"--out must name a .keras file, got {out}")
    features.train_classifier(epochs, out)


def _train(args):
    settings = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__}
    for rate in ("g_lr", "d_lr"):  # --lr sets both, --g-lr and --d-lr each one
        settings[rate] = args.lr if settings[rate] is None else settings[rate]
    # The recipe (what a resumed run keeps from its checkpoint), and how this run goes (what it may change).
    given = {k: v for k, v in settings.items() if v is not None and k not in RESUME_OPTIONS and k != "epochs"}
    options = {k: v for k, v in settings.items() if v is not None and (k in RESUME_OPTIONS or k == "epochs")}
    if args.preset:
        if args.resume:
            raise PrendasError("--preset is for new runs: a resumed run keeps its checkpoint's recipe")
        given = preset_settings(args.preset, given)  # the flags given win over the preset
    # Every range is checked here, before TensorFlow loads: a mistake answers at once, in one line.
    config = TrainConfig(**given, **options)
    check_installed(config)
    if args.out is not None or not args.resume:  # (a resumed run writes beside its checkpoint unless told)
        from prendas.artifacts import check_writable

        check_writable(config.out, "--out")
    from prendas import train as training

    if args.resume:
        if args.epochs is None:
            raise PrendasError("--resume needs --epochs: how many epochs to add")
        return training.resume(args.resume, args.epochs, expect=given, **{k: settings[k] for k in RESUME_OPTIONS})
    return training.train(config)


def _generate(args):
    if not 1 <= args.n <= 10_000:
        raise PrendasError(f"--n must be from 1 to 10000, got {args.n}")
    if args.seed is not None and args.seed < 0:
        raise PrendasError(f"--seed must be 0 or more, got {args.seed}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise PrendasError(f"--out must name a .png file, got {args.out}")
    if not out.parent.is_dir():
        raise PrendasError(f"--out: folder {out.parent} does not exist")
    garment = None if args.garment is None else class_index(args.garment)
    from prendas import artifacts

    artifacts.check_writable(out.parent, "--out")

    artifacts.check_model_file(args.model)  # before TensorFlow loads: a wrong path answers at once
    from prendas.sampling import checkpoint_about, draw, load_generator

    generator = load_generator(args.model, latent_dim=args.latent_dim, precision=args.precision)
    source = ""
    if Path(args.model).suffix == ".npz":
        about = checkpoint_about(args.model)
        source = f" (run {about['tag']} after epoch {about['epoch']}, its {about['weights']})"
    artifacts.save_png(artifacts.image_grid(draw(generator, args.n, args.seed, garment, name=args.model)), out)
    what = "garments" if garment is None else f"{CLASS_NAMES[garment]} images"
    print(f"wrote {args.n} {what} to {out}{source}")


def class_index(name):
    """A Fashion-MNIST class by number (0-9) or name ('sneaker', 'T-shirt/top', 'tshirt'); its index."""
    if name.strip().isdigit() and int(name) < len(CLASS_NAMES):
        return int(name)
    simple = "".join(ch for ch in name.lower() if ch.isalnum())
    for i, known in enumerate(CLASS_NAMES):
        forms = {"".join(ch for ch in known.lower() if ch.isalnum())} | {
            "".join(ch for ch in part.lower() if ch.isalnum()) for part in known.split("/")
        }
        if simple in forms or simple.rstrip("s") in forms:
            return i
    valid = ", ".join(f"{i} {n}" for i, n in enumerate(CLASS_NAMES))
    raise PrendasError(f"unknown class {name!r}: use a number or a name, one of {valid}")


def choose_backend():
    """With KERAS_BACKEND unset and TensorFlow not installed, train on JAX if it is (pip install "prendas[jax]")."""
    import importlib.util

    if os.environ.get("KERAS_BACKEND") or "keras" in sys.modules or importlib.util.find_spec("tensorflow"):
        return
    if importlib.util.find_spec("jax") is None:
        raise PrendasError('no Keras backend is installed: pip install "prendas[tensorflow]" (or "prendas[jax]" '
                           'for JAX without TensorFlow)')
    os.environ["KERAS_BACKEND"] = "jax"
    print("prendas: TensorFlow is not installed; running on JAX (KERAS_BACKEND=jax)", file=sys.stderr)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.command != "results":  # (the only command that needs no Keras)
            choose_backend()
        {"train": _train, "generate": _generate, "evaluate": _evaluate, "results": _results, "evaluator": _evaluator,
         "bench": _bench}[args.command](args)
    except PrendasError as e:
        print(f"prendas {args.command}: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt as e:
        # A stopped run notes where it stopped and the commands that go on from there (train.stopped_message).
        notes = getattr(e, "__notes__", None)
        if args.command != "train":
            said = "interrupted"
        elif notes:
            said = notes[-1]
        elif args.resume:
            said = f"interrupted before the resumed run wrote a checkpoint: {args.resume} is as it was, resume it again"
        else:
            said = "interrupted before the run wrote its first checkpoint: there is nothing to continue"
        print(f"prendas {args.command}: {said}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter short
    sys.exit(main())
