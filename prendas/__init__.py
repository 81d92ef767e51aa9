"""prendas: a DCGAN that learns to draw garments from Fashion-MNIST.

Importing the package is cheap: Keras (and with it TensorFlow) loads only when a submodule that
needs it is imported, so `python -m prendas --help` is instant and `KERAS_BACKEND=jax` works
where TensorFlow is not installed.
"""

__version__ = "0.1.0"


def command():
    """How the user started the command line, for the commands it suggests: `prendas` (installed) or `python -m prendas`."""
    import sys

    return "prendas" if sys.argv and sys.argv[0].rsplit("/", 1)[-1] == "prendas" else "python -m prendas"


def format_seconds(seconds):
    """A duration as the progress lines and the results table show it: '4m05s', or '2h03m' from an hour.

    (Here, not in run.py, which imports Keras: `prendas results` uses it and needs no Keras.)
    """
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class PrendasError(Exception):
    """A mistake the user can fix: a bad flag, a missing or corrupted file, a mismatched model.

    The command line prints its message as one line on stderr and exits with status 2 (or exit_status).
    """

    exit_status = 2


class Diverged(PrendasError):
    """Training produced a non-finite loss or weight; nothing of that epoch was written. Exit status 3."""

    exit_status = 3
