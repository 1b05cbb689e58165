"""MNIST as uint8 tensors in memory, the seeded validation split, and the data configuration every model carries.

The files are found, downloaded and verified in ``datasets/mnist.py``, which needs no PyTorch; here they become
tensors.

    images, labels = load_mnist("train")          # (60000, 28, 28) uint8, (60000,) int64
    train, val = split_validation(images, labels, fraction=0.1, seed=0)
    x = to_input(images, data_config_of(model))   # (60000, 1, 28, 28) float, normalised as the model says

A model's ``DataConfig`` (normalisation and class names) is decided once by ``TrainConfig.data_config``, carried as
``model.data_config`` and written into its checkpoint; ``checkpoint.load`` gives it back to the rebuilt model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from digitlab.datasets.mnist import read_mnist
from digitlab.labels import normalisation_of

# Mean and standard deviation of the 60,000 training images scaled to [0, 1]. A run takes its normalisation from
# here once (``TrainConfig.data_config``); every later reader takes it from the model or its checkpoint.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the 'train' or 'test' split, as tensors
    (``datasets.mnist.read_mnist`` finds, downloads and verifies the files)."""
    images, labels = read_mnist(split, data_dir, download)
    return torch.from_numpy(images), torch.from_numpy(labels)


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
