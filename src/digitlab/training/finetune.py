"""Fine-tuning a trained model on people's own labelled images, mixed with MNIST so that it keeps what it knew.

    digitlab finetune --data my_digits/ --out runs/mine          # from the bundled model
    digitlab finetune runs/default/model.safetensors --data my_digits/ --mnist-ratio 2

The steps, in the order the data flows:

    load the base checkpoint and the user's folder (``folders.load_folder``: the images prediction would see)
    hold out ``validation_split`` of the user's images (``data.split_validation``, seeded)
    each epoch: the user's other images plus ``mnist_ratio`` times as many MNIST training images, drawn afresh from
                the part of MNIST the base trained on, go through ``loop.train_one_epoch`` - the training loop's
                own step, with the base recipe's augmentation, label smoothing and letters for "not a digit"
    average the result with the base's weights (``keep_base`` of the base's): most of the gain, less MNIST drift
    score the user's held-out images and MNIST's held-out digits before and after (``loop.validate``)
    fit the confidence temperature again (``calibrate.calibration_entry``): on the user's held-out images together
                with the base's held-out MNIST digits, since the model will read both; the base's refusal bar
                ("not a digit" offset and threshold) is carried over (``_with_base_bar``)
    write model.safetensors (self-describing; ``finetune`` in its metadata names the base model and the data
                folder's checksum and size) and its ONNX export model.onnx

The checkpoint keeps the base's training ``config``: MNIST's validation split that it names is still unseen, so
`digitlab calibrate` on the result fits on digits neither model learnt from. The defaults were chosen by measurement
(docs/own_digits.md).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from digitlab.datasets.folders import LabelledImages, Skipped, for_model, load_folder
from digitlab.training import checkpoint
from digitlab.training.config import TrainConfig
from digitlab.training.data import Split, split_validation
from digitlab.training.loop import (epoch_seed, resolve_device, split_training_set, steps_per_epoch,
                                    train_one_epoch, use_cpu, validate)
from digitlab.training.state import build_state

OUT_FILES = ("model.safetensors", "model.onnx")
LETTERS = 2_000                   # letters drawn once for "not a digit": enough for a few short epochs
MIN_ONECYCLE_STEPS = 8            # fewer optimiser steps in all: a constant rate instead of a one-cycle schedule


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuneConfig:
    """The settings of a fine-tuning run; `digitlab finetune` has one option per field."""

    epochs: int = field(default=10, metadata=_help("passes over the user's images"))
    learning_rate: float = field(default=1e-3, metadata=_help("peak learning rate of the one-cycle schedule"))
    mnist_ratio: float = field(default=3.0, metadata=_help("MNIST training images mixed into each epoch per user "
                                                           "image (0: the user's images alone)"))
    validation_split: float = field(default=0.2, metadata=_help("fraction of the user's images held out to score "
                                                                "and calibrate on"))
    batch_size: int = field(default=64, metadata=_help("images per optimiser step"))
    seed: int = field(default=0, metadata=_help("random seed"))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda, cuda:N or mps"))
    threads: int = field(default=0, metadata=_help("CPU threads; 0: PyTorch's choice"))
    freeze_norm: bool = field(default=False, metadata=_help("keep batch norm's statistics from the base model"))
    keep_base: float = field(default=0.3, metadata=_help("share of the base model's weights averaged into the result "
                                                         "(0: the fine-tuned weights alone): keeps what it knew"))

    def __post_init__(self) -> None:
        if not self.epochs >= 1 or not self.batch_size >= 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not 0 < self.learning_rate < float("inf"):
            raise ValueError(f"learning_rate must be a positive number, not {self.learning_rate}")
        if not 0 <= self.mnist_ratio <= 100:
            raise ValueError(f"mnist_ratio must be between 0 and 100, not {self.mnist_ratio}")
        if not 0 <= self.validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1), not {self.validation_split}")
        if not 0 <= self.keep_base < 1:
            raise ValueError(f"keep_base must be in [0, 1), not {self.keep_base}")
        if not self.threads >= 0:
            raise ValueError(f"threads must be 0 or more, not {self.threads}")


@dataclass
class FinetuneResult:
    model: torch.nn.Module
    out_dir: Path
    metrics: dict[str, float]            # before_ and after_ scores on the held-out images
    history: list[dict[str, float]]
    calibration: dict[str, Any] | None
    skipped: list[Skipped]               # files left out: unreadable, refused, bad label, or no output for the label
    data: LabelledImages
    seconds: float


def check_out_dir(out_dir: Path, overwrite: bool, export: bool = True) -> None:
    """Refuse to replace a fine-tuned model unasked, before any training: the checkpoint here, and its ONNX file by
    the exporter's own check (``export.refuse_to_replace``), which the export makes again when it writes."""
    if (out_dir / "model.safetensors").exists() and not overwrite:
        there = [name for name in OUT_FILES if (out_dir / name).exists()]
        raise ValueError(f"{out_dir} already holds {' and '.join(there)}: replace them with --overwrite (or choose "
                         f"another --out)")
    if export:
        from digitlab.training.export import refuse_to_replace

        refuse_to_replace(out_dir / "model.onnx", overwrite)


def base_config(meta: dict[str, Any], data_dir: str | None) -> TrainConfig:
    """The base model's recorded training config (its recipe, and the MNIST split it held out); a checkpoint that
    records none is taken as trained on all of MNIST with its network's defaults."""
    recorded = meta.get("config")
    if recorded:
        cfg = TrainConfig.from_dict(recorded)
    else:
        cfg = TrainConfig(model=meta["arch"], model_kwargs=dict(meta.get("arch_kwargs") or {}), validation_split=0.0)
    return replace(cfg, data_dir=data_dir) if data_dir is not None else cfg


@dataclass
class UserImages:
    """The user's labelled images a model can learn: the folder as read, how many have a label the model has an
    output for, the part trained on and the part held out (None when ``validation_split`` is 0), and the files
    dropped for a label the model has no output for."""

    data: LabelledImages
    used: int
    train: Split
    val: Split | None
    dropped: list[Skipped]

    def summary(self) -> dict[str, Any]:
        """The folder's summary with the counts used, trained on and held out, as the checkpoint records it."""
        return self.data.summary() | {"used": self.used, "trained_on": len(self.train),
                                      "held_out": len(self.val) if self.val else 0}


def finetune(data_path: str | os.PathLike, out_dir: str | os.PathLike, base: str | os.PathLike | None = None,
             config: FinetuneConfig = FinetuneConfig(), data_dir: str | None = None, overwrite: bool = False,
             export: bool = True, quiet: bool = False, command: str | None = None,
             check_images: int | None = None) -> FinetuneResult:
    """Fine-tune ``base`` (None: the bundled model) on the labelled images at ``data_path`` and write the result.

    ``data_dir`` is MNIST's folder. ``export`` writes the ONNX file beside the checkpoint (checked against PyTorch
    on ``check_images`` MNIST test images, the exporter's default when None).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite, export)
    say = (lambda *_: None) if quiet else (lambda text: print(text, file=sys.stderr))
    base_path = checkpoint.BUNDLED if base is None else Path(base)
    base_model, meta = checkpoint.load(base_path)
    classes = [str(c) for c in meta["classes"]]
    user = load_user_images(data_path, classes, config)
    mix = round(config.mnist_ratio * len(user.train))
    steps = steps_per_epoch(len(user.train) + mix, config.batch_size)
    cfg = training_config(base_config(meta, data_dir), config, steps)
    device = resolve_device(cfg.device)
    use_cpu(cfg.threads)
    mnist_train, mnist_val = _mnist_parts(base_config(meta, data_dir), config.mnist_ratio)
    say(f"fine-tuning {base_path.name} on {len(user.train)} of your images ({user.data.layout}), "
        f"{len(user.val) if user.val else 0} held out, with {config.mnist_ratio:g} MNIST image(s) per image")

    state = build_state(cfg, device, steps, weights=base_model.state_dict())
    nondigits = _letters(cfg, device)
    metrics = _scores("before", base_model.to(device), user.val, mnist_val)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        split = _on(device, _with_mnist(user.train, mnist_train, mix, epoch_seed(cfg.seed, epoch)))
        row = {"epoch": epoch} | train_one_epoch(cfg, state, split, epoch, nondigits=nondigits,
                                                 freeze_norm=config.freeze_norm)
        if user.val is not None:
            row |= validate(state.eval_model, _on(device, user.val))
        history.append(row)
        say(f"epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.4f}"
            + (f", your held-out images {row['val_accuracy']:.2%}" if "val_accuracy" in row else ""))
    model = state.eval_model.eval()
    if config.keep_base:
        average_with(model, base_model, config.keep_base)
    metrics |= _scores("after", model, user.val, mnist_val)
    calibration = _with_base_bar(_calibrate(model, classes, user.val, mnist_val), meta)

    record = _record(meta, base_path, config, command, user, mix, metrics, history, calibration)
    model = model.to("cpu")
    _write(out_dir, model, record, export, data_dir, overwrite, check_images)
    return FinetuneResult(model, out_dir, metrics, history, calibration, user.data.skipped + user.dropped, user.data,
                          time.perf_counter() - started)


def load_user_images(data_path: str | os.PathLike, classes: list[str], config: FinetuneConfig) -> UserImages:
    """The labelled images at ``data_path`` that a model with ``classes`` can learn, with ``validation_split`` of
    them held out (seeded); fewer than two such images is an error that says how many were skipped."""
    data = load_folder(data_path)
    images, targets, _, dropped = for_model(data, classes)
    if len(images) < 2:
        raise ValueError(f"{data_path}: {len(images)} usable labelled image(s) ({len(data.skipped) + len(dropped)} "
                         f"skipped); fine-tuning needs at least a few per digit")
    train, val = split_validation(torch.from_numpy(images), torch.from_numpy(targets), config.validation_split,
                                  config.seed)
    return UserImages(data, len(images), train, val, dropped)


def training_config(base: TrainConfig, config: FinetuneConfig, steps: int) -> TrainConfig:
    """The base's recipe (augmentation, label smoothing, letters) with the fine-tuning run's own length, rate, batch,
    device and seed, for ``steps`` optimiser steps an epoch."""
    # One cycle: a short warm-up and an anneal suit a few epochs; a run of a handful of steps cannot plan one.
    # No weight EMA: over so few steps it would keep mostly the base's weights.
    schedule = "onecycle" if config.epochs * steps >= MIN_ONECYCLE_STEPS else "constant"
    return replace(base, epochs=config.epochs, learning_rate=config.learning_rate, batch_size=config.batch_size,
                   schedule=schedule, ema_decay=0.0, early_stopping=0, device=config.device, threads=config.threads,
                   seed=config.seed)


def _mnist_parts(base: TrainConfig, mnist_ratio: float) -> tuple[Split | None, Split | None]:
    """(MNIST's images to mix in, MNIST's held-out digits to score on), split as the base model's training split
    them: no images to mix in when ``mnist_ratio`` is 0, no held-out digits when the base trained on all of them."""
    if mnist_ratio:
        return split_training_set(base)
    return None, (split_training_set(base)[1] if base.validation_split else None)


def _letters(cfg: TrainConfig, device: torch.device) -> torch.Tensor | None:
    """The letters taught as "not a digit", drawn once for the run, when the base's recipe teaches them."""
    if not cfg.not_a_digit:
        return None
    from digitlab.datasets.nondigits import letters_in_mnist_form

    return torch.from_numpy(letters_in_mnist_form(LETTERS, seed=cfg.seed)).to(device)


def _with_mnist(user_train: Split, mnist_train: Split | None, mix: int, seed: int) -> Split:
    """One epoch's images: the user's, and ``mix`` MNIST training images drawn afresh with ``seed``."""
    if not mix:
        return user_train
    picked = torch.randint(len(mnist_train), (mix,), generator=torch.Generator().manual_seed(seed))
    return Split(torch.cat([user_train.images, mnist_train.images[picked]]),
                 torch.cat([user_train.labels, mnist_train.labels[picked]]))


def _on(device: torch.device, split: Split) -> Split:
    """``split`` with its images and labels on ``device``."""
    return Split(split.images.to(device), split.labels.to(device))


def _record(meta: dict[str, Any], base_path: Path, config: FinetuneConfig, command: str | None, user: UserImages,
            mix: int, metrics: dict[str, float], history: list[dict[str, float]],
            calibration: dict[str, Any] | None) -> dict[str, Any]:
    """The checkpoint's metadata: the base's training config, the scores after fine-tuning, and under ``finetune``
    what it started from (the base model, the user's folder) and how it ran."""
    record = {
        "config": base_config(meta, None).as_record(),
        "command": command,
        "metrics": {k.removeprefix("after_"): v for k, v in metrics.items() if k.startswith("after_")},
        "finetune": {
            "base": {"file": base_path.name, "arch": meta["arch"], "weights_sha256": meta.get("weights_sha256"),
                     "metrics": meta.get("metrics")},
            "data": user.summary(),
            "settings": asdict(config), "mnist_images_per_epoch": mix, "scores": metrics, "history": history,
        },
    }
    if calibration is not None:
        record["calibration"] = calibration
    return {k: v for k, v in record.items() if v is not None}


def _write(out_dir: Path, model: torch.nn.Module, record: dict[str, Any], export: bool, data_dir: str | None,
           overwrite: bool, check_images: int | None) -> None:
    """model.safetensors into ``out_dir`` and, when ``export``, its ONNX file checked on ``check_images``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.save(out_dir / "model.safetensors", model, record)
    if export:
        from digitlab.training.export import export_onnx

        extra = {} if check_images is None else {"check_images": check_images}
        export_onnx(out_dir / "model.safetensors", out_dir / "model.onnx", data_dir=data_dir, overwrite=overwrite,
                    **extra)


def average_with(model: torch.nn.Module, base: torch.nn.Module, keep: float) -> None:
    """Replace ``model``'s weights (and batch norm's statistics) by ``keep`` times ``base``'s plus the rest of its own.

    Averaging the fine-tuned weights with the ones they started from keeps most of what was learnt while undoing
    much of the drift on what the base knew (docs/own_digits.md, "How the defaults were chosen"). Counters such as
    batch norm's ``num_batches_tracked`` stay the fine-tuned model's.
    """
    own, theirs = model.state_dict(), base.state_dict()
    with torch.no_grad():
        for name, tensor in own.items():
            if tensor.is_floating_point():
                tensor.mul_(1 - keep).add_(theirs[name].to(tensor.device, tensor.dtype), alpha=keep)


def _scores(when: str, model: torch.nn.Module, user_val: Split | None, mnist_val: Split | None) -> dict[str, float]:
    """Accuracy (and loss) on the user's held-out images and MNIST's held-out digits, named ``when``_..."""
    device = next(model.parameters()).device
    scores = {}
    for name, split in (("val", user_val), ("mnist_val", mnist_val)):
        if split is not None and len(split):
            found = validate(model, _on(device, split))
            scores[f"{when}_{name}_accuracy"] = round(found["val_accuracy"], 6)
            scores[f"{when}_{name}_loss"] = round(found["val_loss"], 6)
    return scores


def _with_base_bar(calibration: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The fitted ``calibration`` with the base model's refusal bar (its "not a digit" offset and threshold, which
    ``calibrate.refusal_bar`` chose on real handwriting) carried over. Without it the fine-tuned model would be read
    with no offset and the default threshold, and refuse real digits the base read; choosing the bar again needs the
    real handwriting (`digitlab calibrate --refusal-bar` on the result)."""
    base = meta.get("calibration") or {}
    if calibration is None or "not_a_digit_offset" not in base:
        return calibration
    return calibration | {"not_a_digit_offset": base["not_a_digit_offset"], "threshold": base["threshold"],
                          "refusal_bar": {"carried_from_base": base.get("refusal_bar", {})}}


def _calibrate(model: torch.nn.Module, classes: list[str], user_val: Split | None,
               mnist_val: Split | None) -> dict[str, Any] | None:
    """The temperature fitted on the held-out digits (the user's and MNIST's), or None when there are none, or when
    the model reads every one of them right (then no temperature is best: it would shrink without end)."""
    from digitlab.training.calibrate import calibration_entry
    from digitlab.training.evaluate import infer

    parts, named = [], []
    for split, name in ((user_val, "of the user's held-out images"), (mnist_val, "held-out MNIST digits")):
        if split is not None and len(split):
            digits = split.labels < 10
            parts.append(Split(split.images[digits], split.labels[digits]))
            named.append(f"{len(parts[-1])} {name}")
    if not parts:
        return None
    images, digits = torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])
    logits = infer(model, images)
    if bool((logits.argmax(1) == digits).all()):
        return None
    return calibration_entry(logits, digits, classes, f"after fine-tuning: {' and '.join(named)}")
