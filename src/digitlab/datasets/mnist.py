"""MNIST's four files on disk -> uint8 arrays: found, downloaded into the cache when allowed, and verified.

The four canonical IDX files are found in this order: an explicit ``data_dir`` (the CLI's ``--data-dir``), the
``DIGITLAB_DATA`` environment variable, then a per-user cache directory. Files missing from the cache are
downloaded from public mirrors, written atomically and checked against their MD5 before use. Every file is
verified (checksum, IDX header, size), so a truncated or wrong file is an error that names it, never silent garbage.
Once a file has been verified and inflated, its array is kept in the cache as ``.npy``, named by the file's MD5: a
later read checks the checksum again and loads the array instead of inflating the file anew, which took about as
long as the rest of a short training run's start (docs/results.md, 'Time to accuracy').

    images, labels = read_mnist("test")           # (10000, 28, 28) uint8, (10000,) int64: numpy, no PyTorch

Training takes the same arrays as tensors (``training.data.load_mnist``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from digitlab.errors import DataError
from digitlab.files import atomic_write, cache_root

FILES = {
    "train-images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test-images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test-labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
SPLIT_SIZES = {"train": 60000, "test": 10000}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def default_cache_dir() -> Path:
    return cache_root() / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Where to read MNIST from, and whether downloading into it is allowed (only for the per-user cache)."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), False
    if os.environ.get("DIGITLAB_DATA"):
        return Path(os.environ["DIGITLAB_DATA"]).expanduser(), False
    return default_cache_dir(), True


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(filename: str, md5: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in MIRRORS:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(mirror + filename, timeout=30) as response:
                while block := response.read(1 << 20):
                    out.write(block)
            if md5_of(Path(tmp)) != md5:
                raise DataError(f"checksum mismatch from {mirror}")
            os.replace(tmp, directory / filename)  # atomic: a reader sees the whole file or none
            return
        except Exception as exc:  # noqa: BLE001 - try the next mirror, report all at the end
            errors.append(f"{mirror}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {filename} ({'; '.join(errors)})")


def _missing_message(directory: Path, missing: list[str], needed: list[str]) -> str:
    files = f"the four files {', '.join(needed)}" if len(needed) == 4 else f"the files {', '.join(needed)}"
    return (
        f"MNIST files not found in {directory} (missing: {', '.join(missing)}). Put {files} "
        f"there, or point --data-dir / DIGITLAB_DATA at a folder holding them."
    )


def locate(data_dir: str | os.PathLike | None = None, download: bool = True,
           splits: tuple[str, ...] = ("train", "test")) -> Path:
    """Return the folder holding the verified files of ``splits`` (scoring needs the test files only), downloading
    into the cache if allowed and needed."""
    directory, may_download = resolve_data_dir(data_dir)
    needed = [FILES[f"{split}-{part}"][0] for split in splits for part in ("images", "labels")]
    missing = [name for name in needed if not (directory / name).is_file()]
    if missing and may_download and download:
        for name, md5 in FILES.values():
            if name in missing:
                try:
                    _download(name, md5, directory)
                except DataError as exc:
                    raise DataError(f"{exc}. {_missing_message(directory, missing, needed)}") from None
        missing = []
    if missing:
        raise DataError(_missing_message(directory, missing, needed))
    return directory


def arrays_cache_dir() -> Path:
    return cache_root() / "mnist" / "arrays"


def _read_idx(path: Path, md5: str, expected_count: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """The verified file's array: from the array cache when it holds this file's, else inflated and parsed (and
    then kept there)."""
    if md5_of(path) != md5:
        raise DataError(f"{path}: checksum mismatch (expected MD5 {md5}); the file is corrupt, truncated or not "
                        f"the canonical MNIST file - delete it and fetch it again")
    shape = (expected_count, *item_shape)
    kept = arrays_cache_dir() / f"{md5}.npy"
    try:
        array = np.load(kept, allow_pickle=False)
        if array.shape == shape and array.dtype == np.uint8:
            return array
    except (OSError, ValueError, EOFError):
        pass  # not kept yet, or unreadable: made again below
    array = _parse_idx(path, shape)
    try:
        atomic_write(kept, lambda tmp: _save_array(tmp, array))
    except OSError:
        pass  # a read-only cache costs the next run the inflating, nothing else
    return array


def _save_array(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: given a name, np.save would add ".npy" to it
        np.save(f, array, allow_pickle=False)


def _parse_idx(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The unsigned-byte array of ``shape`` an IDX file holds; DataError if it holds anything else."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: too short for an IDX header")
    zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or dims != ndim:
        raise DataError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimensions")
    found = struct.unpack(f">{ndim}I", raw[4:header])
    if found != shape or len(raw) != header + int(np.prod(found)):
        raise DataError(f"{path}: expected shape {shape}, header says {found} with {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable: the buffer is not


def read_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
               download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8, bright ink on black as MNIST stores them, and labels (N,) int64 of the 'train' or
    'test' split."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    directory = locate(data_dir, download, splits=(split,))
    count = SPLIT_SIZES[split]
    image_name, image_md5 = FILES[f"{split}-images"]
    label_name, label_md5 = FILES[f"{split}-labels"]
    images = _read_idx(directory / image_name, image_md5, count, (28, 28))
    labels = _read_idx(directory / label_name, label_md5, count, ())
    if labels.max() > 9:
        raise DataError(f"{directory / label_name}: labels outside 0-9")
    return images, labels.astype(np.int64)


def checksums() -> dict[str, str]:
    """MD5 of each file the data came from, recorded in checkpoints so a result names its data."""
    return {name: md5 for name, md5 in FILES.values()}
