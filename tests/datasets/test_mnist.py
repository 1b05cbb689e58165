"""MNIST's files: found, verified and read as uint8 arrays; a wrong, truncated or missing file is an error that names
it; nothing is downloaded where it may not be."""

import gzip
import shutil

import numpy as np
import pytest

from digitlab.datasets.mnist import FILES, arrays_cache_dir, locate, read_mnist
from digitlab.errors import DataError


def test_the_test_split_reads_as_uint8_arrays(mnist_dir):
    images, labels = read_mnist("test", mnist_dir)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and images.flags.writeable
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist()[:3] == [980, 1135, 1032]  # MNIST's known class counts
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


@pytest.fixture
def copy_dir(mnist_dir, tmp_path):
    for name, _ in FILES.values():
        shutil.copy(mnist_dir / name, tmp_path / name)
    return tmp_path


def test_truncated_file_is_named(copy_dir):
    path = copy_dir / FILES["test-images"][0]
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*checksum"):
        read_mnist("test", copy_dir)


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_byte_is_caught_by_checksum(copy_dir):
    flip_last_byte(copy_dir / FILES["test-labels"][0])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        read_mnist("test", copy_dir)


def test_wrong_file_in_place_is_refused(copy_dir):
    with gzip.open(copy_dir / FILES["test-labels"][0], "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (10000).to_bytes(4, "big") + bytes(10000))
    with pytest.raises(DataError, match="checksum"):
        read_mnist("test", copy_dir)


def test_missing_files_name_the_ones_needed_and_where(tmp_path):
    with pytest.raises(DataError) as info:
        read_mnist("train", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert FILES["train-images"][0] in message and FILES["train-labels"][0] in message


def test_scoring_needs_only_the_test_files(tmp_path, mnist_dir):
    """`digitlab eval` and `export-samples --split test` read the test split only, and need nothing else."""
    import shutil

    for key in ("test-images", "test-labels"):
        shutil.copy(mnist_dir / FILES[key][0], tmp_path)
    images, labels = read_mnist("test", tmp_path)
    assert images.shape == (10_000, 28, 28) and len(labels) == 10_000
    with pytest.raises(DataError, match="train-images"):
        read_mnist("train", tmp_path)


def test_explicit_dir_never_downloads(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(DataError):
        locate(tmp_path)


def test_environment_variable_is_used(mnist_dir, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_dir))
    assert locate() == mnist_dir


def test_cache_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITLAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataError, match="could not download.*network is unreachable"):
        locate()
    assert not list((tmp_path / "digitlab" / "mnist").glob("*.gz"))  # nothing half-written left behind


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An array cache of its own: the session's is shared with every test that reads MNIST."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def test_a_verified_file_is_inflated_once_and_then_read_from_the_array_cache(copy_dir, fresh_cache, monkeypatch):
    first = read_mnist("test", copy_dir)
    kept = sorted(p.name for p in arrays_cache_dir().iterdir())
    assert kept == sorted(f"{FILES[key][1]}.npy" for key in ("test-images", "test-labels"))

    def no_inflating(*args, **kwargs):
        raise AssertionError("inflated a file whose array is kept")

    monkeypatch.setattr(gzip, "open", no_inflating)
    again = read_mnist("test", copy_dir)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert again[0].flags.writeable


def test_the_checksum_is_checked_even_when_the_array_is_kept(copy_dir, fresh_cache):
    read_mnist("test", copy_dir)
    flip_last_byte(copy_dir / FILES["test-images"][0])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*checksum"):
        read_mnist("test", copy_dir)


def test_a_damaged_or_unwritable_array_cache_costs_only_the_inflating(copy_dir, fresh_cache, monkeypatch):
    images, _ = read_mnist("test", copy_dir)
    damaged = arrays_cache_dir() / f"{FILES['test-images'][1]}.npy"
    damaged.write_bytes(b"")
    assert np.array_equal(read_mnist("test", copy_dir)[0], images)
    assert np.load(damaged).shape == (10000, 28, 28)  # made again

    def read_only(*args, **kwargs):
        raise PermissionError("read-only")

    damaged.unlink()
    monkeypatch.setattr("digitlab.datasets.mnist.atomic_write", read_only)
    assert np.array_equal(read_mnist("test", copy_dir)[0], images)
    assert not damaged.exists()
