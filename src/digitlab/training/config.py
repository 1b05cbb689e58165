"""Named training recipes: the tutorials' settings (and our own), so any of them runs in one line.

    digitlab train --recipe cnn5x5_dense1000

A recipe is a dict of ``TrainConfig`` fields; command-line options override single fields.
The tutorial recipes train on all 60,000 images for a fixed number of epochs, as the tutorials did, unless the
tutorial held out a validation split itself; nothing is picked on the test set.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from digitlab.labels import class_names
from digitlab.training.augment import AugmentConfig
from digitlab.training.data import MNIST_MEAN, MNIST_STD, DataConfig
from digitlab.training.models import get_entry

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "onecycle", "plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
SYNC_BATCHNORM_ON_CPU = ("sync_batchnorm needs GPUs: PyTorch's SyncBatchNorm runs on CUDA devices only (on the CPU "
                         "each process keeps its own batch-norm statistics, which is the default)")
MNIST = "mnist"      # in TrainConfig.data: MNIST's training images; anything else names a labelled image folder


@dataclass
class TrainConfig:
    model: str = "cnn5x5_dense1000"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    adam_beta2: float = 0.999      # Adam(W): decay of the squared-gradient average (beta1 is the one-cycle's momentum)
    weight_decay: float = 0.0
    momentum: float = 0.9          # SGD only (Nesterov)
    schedule: str = "constant"
    onecycle_warmup: float = 0.25  # 'onecycle': fraction of the steps spent rising to learning_rate (pct_start)
    step_epochs: int = 5           # 'step': multiply the rate by step_gamma every step_epochs
    step_gamma: float = 0.1
    plateau_patience: int = 2      # 'plateau': epochs without a better validation loss before the rate drops
    plateau_factor: float = 0.3    # 'plateau': what the rate is multiplied by when it drops
    label_smoothing: float = 0.0
    augment: bool = False
    augment_config: AugmentConfig = field(default_factory=AugmentConfig)
    ema_decay: float = 0.0         # 0 turns weight EMA off; the EMA weights are the ones validated and saved
    not_a_digit: float = 0.0       # letters added to each batch, as this fraction of it, taught as an 11th class
    real_letters: bool = False     # those letters include real handwritten ones, not only pen-drawn (datasets/writers.py)
    other_writers: float = 0.0     # real digits by writers outside MNIST added to each batch, as this fraction of it
    realdata_dir: str | None = None  # the real handwriting's folder (default: $DIGITLAB_REALDATA)
    validation_split: float = 0.1
    early_stopping: int = 0        # patience in epochs on validation accuracy; 0 turns it off
    seed: int = 0
    limit: int = 0                 # train on the first `limit` images only (0: all); for quick experiments
    device: str = "auto"
    threads: int = 0               # CPU threads; 0 leaves PyTorch's choice
    channels_last: bool = True
    sync_batchnorm: bool = False   # under torchrun on GPUs: batch norm over all processes' batches (SyncBatchNorm)
    bf16: bool = False             # forward and backward under bfloat16 autocast; weights and optimiser stay float32
    data_dir: str | None = None
    data: list[str] = field(default_factory=lambda: [MNIST])  # what to train on: "mnist" and/or labelled folders

    def __post_init__(self) -> None:
        if isinstance(self.augment_config, dict):
            self.augment_config = AugmentConfig(**self.augment_config)
        get_entry(self.model)  # an unknown network fails here, before any work, with the list of choices
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        # Written so that NaN fails too: every comparison with NaN is false.
        for name in ("epochs", "batch_size", "step_epochs"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("limit", "threads", "early_stopping", "plateau_patience"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        for name in ("learning_rate", "step_gamma"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number, not {getattr(self, name)}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be 0 or a positive number, not {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), not {self.momentum}")
        if not 0 <= self.validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1), not {self.validation_split}")
        if not DEVICE.fullmatch(self.device):
            raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N for GPU N), not {self.device!r}")
        if self.sync_batchnorm and self.device == "cpu":
            raise ValueError(SYNC_BATCHNORM_ON_CPU)
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label_smoothing must be in [0, 1)")
        if not 0 <= self.not_a_digit < 1:
            raise ValueError("not_a_digit must be in [0, 1)")
        if not 0 <= self.other_writers < 1:
            raise ValueError("other_writers must be in [0, 1)")
        if self.real_letters and not self.not_a_digit:
            raise ValueError("real_letters needs not_a_digit: the letters are taught as the 'not a digit' class")
        if not 0 < self.onecycle_warmup < 1:
            raise ValueError("onecycle_warmup must be in (0, 1)")
        if not 0 < self.plateau_factor < 1:
            raise ValueError("plateau_factor must be in (0, 1)")
        if (isinstance(self.data, str) or not self.data or not all(isinstance(d, str) and d for d in self.data)
                or self.data.count(MNIST) > 1):
            raise ValueError(f"data must list 'mnist' (at most once) and/or labelled image folders, not {self.data!r}")
        self.data = list(self.data)
        classes = len(self.data_config().classes)
        if self.not_a_digit and self.model_kwargs.get("classes") != classes:
            raise ValueError(f"not_a_digit needs a network with an 11th output: model_kwargs classes={classes}")

    def data_config(self) -> DataConfig:
        """The normalisation and class names of the model this run trains, decided here once.

        The loop gives them to the model, the checkpoint records them, and every reader takes them from there.
        """
        return DataConfig(MNIST_MEAN, MNIST_STD, tuple(class_names(self.not_a_digit > 0)))

    def folders(self) -> list[str]:
        """The labelled image folders the run learns from: ``data`` without MNIST."""
        return [source for source in self.data if source != MNIST]

    def as_record(self) -> dict[str, Any]:
        """The settings as a checkpoint records them: plain JSON values, so a tuple reads back as a list."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**values)


RECIPES: dict[str, dict[str, Any]] = {
    "cnn5x5_dense1000": dict(model="cnn5x5_dense1000", optimizer="adam", learning_rate=1e-3, batch_size=128,
                             epochs=10, validation_split=0.0),
    "tinyvgg_dropout": dict(model="tinyvgg_dropout", optimizer="adam", learning_rate=1e-3, batch_size=60,
                            epochs=25, validation_split=0.0),
    "conv32_dense128": dict(model="conv32_dense128", optimizer="adam", learning_rate=1e-3, batch_size=32,
                            epochs=5, validation_split=0.0),
    "conv3_dense64": dict(model="conv3_dense64", optimizer="adam", learning_rate=1e-3, batch_size=64,
                          epochs=10, validation_split=0.2),
    "mlp_3x256": dict(model="mlp_3x256", optimizer="sgd", learning_rate=0.05, momentum=0.0, batch_size=1024,
                      epochs=20, validation_split=0.0),
    # Our own: batch norm, batched affine augmentation, label smoothing, one-cycle AdamW and weight EMA, on all
    # 60,000 images for a fixed number of epochs (nothing is chosen by looking at any score). Each batch also
    # carries 25% real digits by writers outside MNIST and 10% letters taught as an 11th class, "not a digit":
    # pen-drawn (datasets/nondigits.py) and real handwritten ones, both of the real handwriting's training part
    # (datasets/writers.py), drawn as people hand images in. The share of other writers was chosen on the choose part
    # of every source (docs/handwriting.md, 'Many writers'); without the real handwriting the recipe learns from
    # MNIST alone.
    "default": dict(model="digitnet", model_kwargs=dict(classes=11), optimizer="adamw", learning_rate=3e-3,
                    weight_decay=0.05, batch_size=128, epochs=15, schedule="onecycle", label_smoothing=0.1,
                    augment=True, augment_config=dict(rotate=10.0, shift=0.1, scale=0.1, shear=10.0),
                    ema_decay=0.998, not_a_digit=0.1, real_letters=True, other_writers=0.25, validation_split=0.0),
    # The quickest roads to 99.0% and to 99.5% test accuracy on a CPU (benchmarks/time_to_accuracy.py): a small net
    # that does little work per image (digitnet_quick), large steps, no EMA, Adam's squared-gradient average that
    # forgets within a few hundred steps, and a one-cycle schedule that ends exactly where the clock should stop.
    # 99.0% wants one epoch, no augmentation at all in so few steps, and only the central 24x24 pixels; 99.5% needs
    # augmentation, more epochs and the whole image, which augmentation moves the digit around in (docs/results.md,
    # 'Time to accuracy').
    "fast": dict(model="digitnet_quick", model_kwargs=dict(widths=(16, 32, 128), crop=2), optimizer="adamw",
                 learning_rate=4e-3, adam_beta2=0.9, weight_decay=0.01, batch_size=128, epochs=1,
                 schedule="onecycle", label_smoothing=0.1, augment=False, validation_split=0.0),
}
# 99.5%: the fast recipe's network on the whole image and its steps for five epochs, with light augmentation
RECIPES["fast_995"] = RECIPES["fast"] | dict(model_kwargs=dict(widths=(16, 32, 128)), epochs=5, augment=True,
                                             augment_config=dict(rotate=8.0, shift=0.08, scale=0.08, shear=0.0))
DEFAULT_RECIPE = "default"


def list_recipes() -> list[str]:
    return sorted(RECIPES)


def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    """The recipe's TrainConfig with ``overrides`` (None values are ignored) applied."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(list_recipes())}")
    values = dict(RECIPES[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(values)
