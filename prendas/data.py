"""Fashion-MNIST: find the files, check them, choose the training images, order each epoch.

The four upstream files (`*-ubyte.gz`, IDX format) are looked for, in order, in
`$FASHION_MNIST_DIR`, the Debian/Ubuntu package `dataset-fashion-mnist`, and the Keras cache;
only when none has them does Keras download them.
"""

import dataclasses
import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from prendas import PrendasError
from prendas.config import ALL_IMAGES, TRAIN_IMAGES

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# split -> (images file, labels file, number of images)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", TRAIN_IMAGES),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", ALL_IMAGES - TRAIN_IMAGES),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_UBYTE_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_UBYTE_LABELS = 0x00000801  # unsigned bytes, 1 dimension
_SIDE = 28


@dataclasses.dataclass(frozen=True)
class FashionMNIST:
    """The two splits as uint8 arrays (images N x 28 x 28, labels N) and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def candidate_dirs():
    """The folders searched, in order, as (description, path) pairs."""
    places = []
    if os.environ.get("FASHION_MNIST_DIR"):
        places.append(("$FASHION_MNIST_DIR", Path(os.environ["FASHION_MNIST_DIR"])))
    places.append(("package dataset-fashion-mnist", DEBIAN_DIR))
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    places.append(("Keras cache", keras_home / "datasets" / "fashion-mnist"))
    return places


def _has_all_files(folder):
    return all((folder / name).is_file() for images, labels, _ in FILES.values() for name in (images, labels))


def load_fashion_mnist():
    """Load both splits, from the first folder that has all four files, else by downloading."""
    places = candidate_dirs()
    explicit = os.environ.get("FASHION_MNIST_DIR")
    if explicit and not _has_all_files(Path(explicit)):
        # A folder the user named on purpose that lacks files is a mistake, not a reason to look elsewhere.
        missing = [n for images, labels, _ in FILES.values() for n in (images, labels) if not (Path(explicit) / n).is_file()]
        raise PrendasError(f"FASHION_MNIST_DIR={explicit} lacks {', '.join(missing)}")
    for _, folder in places:
        if _has_all_files(folder):
            return _load_folder(folder)
    return _download(places)


def _load_folder(folder):
    arrays = {}
    for split, (images_name, labels_name, count) in FILES.items():
        arrays[f"x_{split}"] = read_idx(folder / images_name, _IDX_UBYTE_IMAGES, (count, _SIDE, _SIDE))
        labels = read_idx(folder / labels_name, _IDX_UBYTE_LABELS, (count,))
        if labels.max() > 9:
            raise PrendasError(f"{folder / labels_name}: labels must be 0-9, found {labels.max()}")
        arrays[f"y_{split}"] = labels
    return FashionMNIST(**arrays, source=str(folder))


def read_idx(path, magic, shape):
    """Read a gzipped IDX file and check its magic number, its dimensions and its length."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise PrendasError(f"{path}: cannot read it as gzip ({e}); reinstall or download it again") from None
    header = 4 + 4 * len(shape)
    if len(raw) < header:
        raise PrendasError(f"{path}: too short for an IDX header ({len(raw)} bytes); the file is corrupted")
    found_magic, *dims = struct.unpack(f">{1 + len(shape)}I", raw[:header])
    if found_magic != magic:
        raise PrendasError(f"{path}: not the expected IDX file (magic {found_magic:#010x}, expected {magic:#010x})")
    if tuple(dims) != shape:
        raise PrendasError(f"{path}: dimensions {tuple(dims)}, expected {shape}")
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise PrendasError(f"{path}: {len(raw)} bytes, expected {expected}; the file is truncated or corrupted")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _download(places):
    """The last resort: keras.datasets downloads the files into the Keras cache."""
    tried = "; ".join(f"{what} ({path})" for what, path in places)
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # no network, a proxy, a half-written cache: all end the same way
        raise PrendasError(
            f"Fashion-MNIST not found. Looked in {tried}, then tried to download it "
            f"({type(e).__name__}: {e}). Fix: `sudo apt-get install dataset-fashion-mnist`, or put the four "
            f"*-ubyte.gz files in a folder and set FASHION_MNIST_DIR to it, or connect to the network"
        ) from None
    return FashionMNIST(x_train, y_train, x_test, y_test, source="downloaded by keras.datasets.fashion_mnist")


def select_images(data, n, seed):
    """The N training images of a run, and a record of where they came from.

    N <= 60,000 are drawn from the training split only (the test split is the reference for
    quality figures); larger N take all training images plus N - 60,000 test images. The
    choice follows from the seed alone.
    """
    if not 1 <= n <= ALL_IMAGES:
        raise PrendasError(f"images must be from 1 to {ALL_IMAGES}, got {n} (--images)")
    rng = np.random.default_rng([seed, 1])  # its own stream: the subset does not move the other draws
    n_train = min(n, len(data.x_train))
    train_idx = np.sort(rng.permutation(len(data.x_train))[:n_train])
    test_idx = np.sort(rng.permutation(len(data.x_test))[: n - n_train])
    images = np.concatenate([data.x_train[train_idx], data.x_test[test_idx]])
    labels = np.concatenate([data.y_train[train_idx], data.y_test[test_idx]])
    record = {
        "source": data.source,
        "images": int(n),
        "train_images": int(n_train),
        "test_images": int(n - n_train),
        "includes_test_images": bool(n > n_train),
    }
    return images, labels, record


def epoch_order(n_images, seed, epoch):
    """The order in which epoch `epoch` visits the images: a permutation drawn from (seed, epoch).

    Epoch e's order does not depend on what came before, so a run resumed at epoch e sees the
    same batches as one that never stopped. Step i of the epoch takes the images at positions
    i*B .. i*B+B-1 of it; the last step of an epoch may be short.
    """
    return np.random.default_rng([seed, 2, epoch]).permutation(n_images).astype(np.int32)


def steps_per_epoch(n_images, batch_size):
    return -(-n_images // batch_size)
