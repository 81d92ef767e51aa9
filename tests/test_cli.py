"""The command line's answers to a user's mistakes: one line on stderr, exit status 2, nothing written."""

import pytest
from conftest import files_under

from prendas.__main__ import main
from prendas.artifacts import save_model
from prendas.models import build_discriminator, build_generator


@pytest.fixture
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    save_model(build_generator(100), folder / "generator_x.keras")
    save_model(build_discriminator(), folder / "discriminator_x.keras")
    return folder


def _refused(capsys, folder, argv, message):
    before = files_under(folder)
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors exit from inside parse_args
        status = e.code
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert files_under(folder) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs must be an integer from 1 to 100000, got 0 (--epochs)"),
        (["--images", "70001"], "--images"),
        (["--batch-size", "-1"], "--batch-size"),
        (["--lr", "0"], "--g-lr"),
        (["--latent-dim", "0"], "--latent-dim"),
        (["--checkpoint-every", "0"], "--checkpoint-every"),
        (["--resume", "missing.npz", "--epochs", "2"], "no checkpoint at missing.npz"),
        (["--resume", "missing.npz"], "--resume needs --epochs"),
        (["--ema", "1.5"], "ema must be 0 (off) or a decay in [0.5, 1), got 1.5 (--ema)"),
        (["--d-steps", "0"], "--d-steps"),
        (["--beta-1", "1"], "--beta-1"),
        (["--loss", "lsgan"], "argument --loss: invalid choice: 'lsgan'"),
        (["--arch", "vit"], "argument --arch: invalid choice"),
        (["--steps-per-execution", "0"], "--steps-per-execution"),
        (["--precision", "float8"], "argument --precision: invalid choice"),
        (["--class-loss", "1"], "--class-loss needs --conditional"),
        (["--conditional", "--class-loss", "-1"], "class_loss must be a weight from 0 (off) to 10, got -1.0 (--class-loss)"),
        (["--preset", "fastest"], "argument --preset: invalid choice: 'fastest'"),
        (["--preset", "best", "--resume", "missing.npz", "--epochs", "2"], "--preset is for new runs"),
    ],
)
def test_train_refuses_bad_settings(capsys, tmp_path, args, message):
    _refused(capsys, tmp_path, ["train", *args, "--out", str(tmp_path)], message)


def test_train_refuses_an_output_folder_it_cannot_write(capsys, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    _refused(capsys, tmp_path, ["train", "--epochs", "1", "--out", str(tmp_path / "taken" / "run")], "not a writable folder")


def test_argparse_mistakes_are_one_line_too(capsys, tmp_path):
    _refused(capsys, tmp_path, ["train", "--epochs", "many"], "invalid int value: 'many'")
    _refused(capsys, tmp_path, ["train", "--colour", "red"], "unrecognized arguments: --colour")


def test_resume_refuses_changed_settings(capsys, tmp_path):
    from prendas import artifacts
    from prendas.config import TrainConfig

    checkpoint = tmp_path / "checkpoints" / "checkpoint_T.npz"
    meta = {"format": artifacts.CHECKPOINT_FORMAT, "version": 1, **{k: 0 for k in artifacts.CHECKPOINT_KEYS}}
    meta["config"] = TrainConfig(batch_size=64).to_dict()
    artifacts.save_checkpoint(checkpoint, {}, meta, [])
    _refused(
        capsys,
        tmp_path,
        ["train", "--resume", str(checkpoint), "--epochs", "2", "--batch-size", "128"],
        "--batch-size cannot change when resuming: the checkpoint trained with 64",
    )
    _refused(
        capsys,
        tmp_path,
        ["train", "--resume", str(checkpoint), "--epochs", "2", "--loss", "hinge"],
        "--loss cannot change when resuming: the checkpoint trained with bce",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nowhere.keras"], "no model file at nowhere.keras"),
        (["--model", "{m}/discriminator_x.keras"], "is not a generator"),
        (["--model", "{m}/generator_x.keras", "--latent-dim", "64"], "latent vector of size 100, not 64"),
        (["--model", "{m}/generator_x.keras", "--n", "0"], "--n must be from 1 to 10000"),
        (["--model", "{m}/generator_x.keras", "--out", "{t}/x.jpg"], "must name a .png file"),
        (["--model", "{m}/generator_x.keras", "--out", "{t}/no/such/x.png"], "does not exist"),
    ],
)
def test_generate_refuses_bad_input(capsys, tmp_path, models, args, message):
    args = [a.format(m=models, t=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "x.png")]
    _refused(capsys, tmp_path, ["generate", *args], message)


@pytest.mark.parametrize("command", ["train", "generate"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and ("--resume" in out if command == "train" else "--model" in out)


@pytest.mark.parametrize(
    "args",
    [["train", "--epochs", "0"], ["generate", "--model", "nowhere.keras"], ["evaluate", "--model", "nowhere.keras"]],
)
def test_mistakes_answer_before_tensorflow_loads(args):
    """In a fresh process: nothing but the error line (TensorFlow would print its own start-up lines)."""
    from conftest import run_cli

    result = run_cli(*args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"prendas {args[0]}: error: ")
