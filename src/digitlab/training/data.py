"""MNIST on disk -> uint8 tensors in memory, and the data configuration every model carries.

The four canonical IDX files are found in this order: an explicit ``data_dir`` (the CLI's ``--data-dir``), the
``DIGITLAB_DATA`` environment variable, then a per-user cache directory. Files missing from the cache are
downloaded from public mirrors, written atomically and checked against their MD5 before use. Every file is
verified (checksum, IDX header, size), so a truncated or wrong file is an error that names it, never silent garbage.

    images, labels = load_mnist("train")          # (60000, 28, 28) uint8, (60000,) int64
    train, val = split_validation(images, labels, fraction=0.1, seed=0)
    x = to_input(images, data_config_of(model))   # (60000, 1, 28, 28) float, normalised as the model says

A model's ``DataConfig`` (normalisation and class names) is decided once by ``TrainConfig.data_config``, carried as
``model.data_config`` and written into its checkpoint; ``checkpoint.load`` gives it back to the rebuilt model.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.errors import DataError
from digitlab.files import cache_root
from digitlab.labels import normalisation_of

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
# Mean and standard deviation of the 60,000 training images scaled to [0, 1]. A run takes its normalisation from
# here once (``TrainConfig.data_config``); every later reader takes it from the model or its checkpoint.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


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


def _read_idx(path: Path, md5: str, expected_count: int, item_shape: tuple[int, ...]) -> np.ndarray:
    if md5_of(path) != md5:
        raise DataError(f"{path}: checksum mismatch (expected MD5 {md5}); the file is corrupt, truncated or not "
                        f"the canonical MNIST file - delete it and fetch it again")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    ndim = len(item_shape) + 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: too short for an IDX header")
    zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or dims != ndim:
        raise DataError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if shape != (expected_count, *item_shape) or len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path}: expected shape {(expected_count, *item_shape)}, header says {shape} "
                        f"with {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the 'train' or 'test' split."""
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
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def checksums() -> dict[str, str]:
    """MD5 of each file the data came from, recorded in checkpoints so a result names its data."""
    return {name: md5 for name, md5 in FILES.values()}


@dataclass
class Split:
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)


def split_validation(images: torch.Tensor, labels: torch.Tensor, fraction: float,
                     seed: int = 0) -> tuple[Split, Split | None]:
    """Hold out a seeded random ``fraction`` of the training set for validation (0 gives no validation set)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), not {fraction}")
    if fraction == 0.0:
        return Split(images, labels), None
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    held = int(round(len(labels) * fraction))
    val_idx, train_idx = order[:held], order[held:]
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


# --- what a model's input and outputs mean -------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    """How a model's input is normalised and what each of its outputs means (timm's ``default_cfg``).

    Decided once where a run is configured, carried by the model object (``model.data_config``), written into its
    checkpoint and ONNX file as ``normalisation`` and ``classes``, and read back from there by every consumer, so
    nothing assumes or infers them.
    """
    mean: float
    std: float
    classes: tuple[str, ...]  # one name per output, in output order (``digitlab.labels``)

    def metadata(self) -> dict[str, Any]:
        """The checkpoint metadata entries that hold this configuration."""
        return {"normalisation": {"mean": self.mean, "std": self.std}, "classes": list(self.classes)}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> "DataConfig":
        """Read the configuration back from checkpoint metadata; ValueError names what is missing or wrong.

        Older checkpoints list the digits as numbers; they are read as their names ("0" ... "9").
        """
        mean, std = normalisation_of(meta)
        classes = meta.get("classes")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, (str, int)) for c in classes):
            raise ValueError(f"metadata 'classes' must be a list of class names, not {classes!r}")
        return cls(mean, std, tuple(str(c) for c in classes))


def attach_data_config(model: torch.nn.Module, data: DataConfig) -> torch.nn.Module:
    """Give ``model`` its data configuration, refusing one whose class list is not as long as the model's output."""
    outputs = count_outputs(model)
    if outputs != len(data.classes):
        raise ValueError(f"network {getattr(model, 'arch_name', type(model).__name__)!r} has {outputs} outputs, "
                         f"but the class list has {len(data.classes)} names ({', '.join(data.classes)})")
    model.data_config = data
    return model


def data_config_of(model: torch.nn.Module) -> DataConfig:
    """The data configuration a model carries (from ``checkpoint.load`` or ``attach_data_config``)."""
    data = getattr(model, "data_config", None)
    if not isinstance(data, DataConfig):
        raise ValueError("this model carries no data configuration (normalisation and classes): load it with "
                         "checkpoint.load, or give it one with data.attach_data_config")
    return data


def count_outputs(model: torch.nn.Module) -> int:
    """How many outputs ``model`` gives for one 28x28 image (one forward pass in eval mode)."""
    was_training = model.training
    parameter = next(model.parameters())
    with torch.no_grad():
        outputs = model.eval()(torch.zeros(1, 1, 28, 28, device=parameter.device, dtype=parameter.dtype)).shape[1]
    model.train(was_training)
    return outputs


def to_input(images: torch.Tensor, data: DataConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) on ``device``, normalised as ``data`` says (the model's own)."""
    x = images.to(device).unsqueeze(1).float().div_(255.0)
    return x.sub_(data.mean).div_(data.std)
