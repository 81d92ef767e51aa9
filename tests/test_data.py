import gzip
import struct

import numpy as np
import pytest

from prendas import PrendasError, data
from prendas.data import epoch_order, load_fashion_mnist, select_images


@pytest.fixture(scope="module")
def mnist(real_data_dir):
    return load_fashion_mnist()


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No data in any place: an empty package folder and Keras cache, no FASHION_MNIST_DIR."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def test_loads_the_real_files(mnist, real_data_dir):
    assert mnist.x_train.shape == (60_000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10_000, 28, 28)
    assert mnist.y_train.shape == (60_000,) and mnist.y_test.shape == (10_000,)
    assert set(np.unique(mnist.y_train)) == set(range(10))
    assert np.bincount(mnist.y_test).tolist() == [1000] * 10  # the test split is balanced
    assert mnist.source == str(real_data_dir)
    assert len(data.CLASS_NAMES) == 10


def test_fashion_mnist_dir_comes_first(data_copy, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data_copy))
    assert load_fashion_mnist().source == str(data_copy)


def test_keras_cache_is_used_when_the_package_is_missing(nowhere, data_copy, monkeypatch):
    cache = nowhere / "keras" / "datasets" / "fashion-mnist"
    cache.parent.mkdir(parents=True)
    data_copy.rename(cache)
    assert load_fashion_mnist().source == str(cache)


def test_fashion_mnist_dir_missing_a_file_is_an_error(data_copy, monkeypatch):
    (data_copy / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data_copy))
    with pytest.raises(PrendasError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist()


def test_nothing_found_and_no_download_names_every_place(nowhere, monkeypatch):
    import keras

    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(PrendasError) as error:
        load_fashion_mnist()
    message = str(error.value)
    for place in ("dataset-fashion-mnist", str(nowhere / "debian"), str(nowhere / "keras"), "FASHION_MNIST_DIR"):
        assert place in message
    assert "network unreachable" in message and "apt-get install" in message


def test_download_is_the_last_resort(nowhere, mnist, monkeypatch):
    import keras

    arrays = ((mnist.x_train, mnist.y_train), (mnist.x_test, mnist.y_test))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", lambda: arrays)
    loaded = load_fashion_mnist()
    assert "downloaded" in loaded.source and loaded.x_test.shape == (10_000, 28, 28)


def _rewrite(path, transform):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(transform(raw))


@pytest.mark.parametrize(
    "name, damage, complaint",
    [
        # the gzip stream cut in half
        ("train-images-idx3-ubyte.gz", "truncate-gzip", "gzip"),
        # a valid gzip holding fewer bytes than the header promises
        ("t10k-images-idx3-ubyte.gz", lambda raw: raw[:-784], "truncated"),
        # the images where the labels should be
        ("train-labels-idx1-ubyte.gz", "swap", "magic"),
        # a header that counts the wrong number of images
        ("t10k-labels-idx1-ubyte.gz", lambda raw: raw[:4] + struct.pack(">I", 9_999) + raw[8:], "dimensions"),
        # a label out of range
        ("t10k-labels-idx1-ubyte.gz", lambda raw: raw[:-1] + b"\x0c", "labels must be 0-9"),
        ("t10k-labels-idx1-ubyte.gz", lambda raw: b"", "too short"),
    ],
)
def test_damaged_files_are_named(data_copy, monkeypatch, name, damage, complaint):
    path = data_copy / name
    if damage == "truncate-gzip":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "swap":
        path.write_bytes((data_copy / "train-images-idx3-ubyte.gz").read_bytes())
    else:
        _rewrite(path, damage)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(data_copy))
    with pytest.raises(PrendasError, match=complaint) as error:
        load_fashion_mnist()
    assert str(path) in str(error.value)


def test_subset_comes_from_the_training_split(mnist):
    images, labels, record = select_images(mnist, 3_000, seed=7)
    assert images.shape == (3_000, 28, 28) and labels.shape == (3_000,)
    assert record == {
        "source": mnist.source,
        "images": 3_000,
        "train_images": 3_000,
        "test_images": 0,
        "includes_test_images": False,
    }
    train_rows = {row.tobytes() for row in mnist.x_train}
    assert all(image.tobytes() in train_rows for image in images[:200])
    assert len({image.tobytes() for image in images}) > 2_990  # distinct images, not repeats


def test_subset_follows_the_seed(mnist):
    a, _, _ = select_images(mnist, 500, seed=1)
    b, _, _ = select_images(mnist, 500, seed=1)
    c, _, _ = select_images(mnist, 500, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_default_uses_every_training_image_and_no_test_image(mnist):
    images, _, record = select_images(mnist, 60_000, seed=0)
    assert record["train_images"] == 60_000 and not record["includes_test_images"]
    assert np.array_equal(np.sort(images.reshape(60_000, -1).sum(1)), np.sort(mnist.x_train.reshape(60_000, -1).sum(1)))


def test_more_than_60000_adds_test_images_and_says_so(mnist):
    images, labels, record = select_images(mnist, 70_000, seed=3)
    assert record["train_images"] == 60_000 and record["test_images"] == 10_000
    assert record["includes_test_images"] is True
    assert np.array_equal(images[60_000:], mnist.x_test) and np.array_equal(labels[60_000:], mnist.y_test)


@pytest.mark.parametrize("n", [0, -5, 70_001])
def test_subset_size_out_of_range(mnist, n):
    with pytest.raises(PrendasError, match="images"):
        select_images(mnist, n, seed=0)


def test_each_epoch_has_its_own_order_drawn_from_seed_and_epoch_alone():
    first, second = epoch_order(10, seed=0, epoch=0), epoch_order(10, seed=0, epoch=1)
    assert sorted(first.tolist()) == list(range(10)) and sorted(second.tolist()) == list(range(10))
    assert not np.array_equal(first, second)  # reshuffled every epoch
    assert not np.array_equal(epoch_order(50, seed=4, epoch=2), epoch_order(50, seed=5, epoch=2))
