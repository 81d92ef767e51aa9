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


class PrendasError(Exception):
    """A mistake the user can fix: a bad flag, a missing or corrupted file, a mismatched model.

    The command line prints its message as one line on stderr and exits with status 2 (or exit_status).
    """

    exit_status = 2


class Diverged(PrendasError):
    """Training produced a non-finite loss or weight; nothing of that epoch was written. Exit status 3."""

    exit_status = 3
