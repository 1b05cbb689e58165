"""Training: a ``TrainConfig`` dataclass beside one plain loop.

The whole training set stays in memory as uint8 tensors (on the GPU when there is one); each step indexes a batch,
augments it as one tensor and takes an optimiser step - no per-sample Python, no loader workers. After every epoch
the loop validates and writes, atomically, ``model.safetensors`` (the self-describing model), ``resume.safetensors``
(optimiser, schedule and EMA state) and ``history.json``; so Ctrl-C or a kill loses at most the running epoch and
``resume=True`` carries on from the last one.

Under ``torchrun`` the same call trains with DistributedDataParallel, nothing to change: every process takes its
share of each epoch's batches (so the effective batch is ``batch_size`` times the number of processes), gradients
are averaged across processes (gloo on CPU, NCCL on GPUs), and only rank 0 prints and writes files.

    torchrun --nproc_per_node 2 -m digitlab.cli train --recipe default

    result = train(TrainConfig(model="cnn5x5_dense1000", epochs=10), out_dir="runs/cnn5x5")
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from digitlab.files import atomic_write_text
from digitlab.training import checkpoint
from digitlab.training.augment import random_affine
from digitlab.training.config import NOT_A_DIGIT_CLASS, TrainConfig
from digitlab.training.data import MNIST_MEAN, MNIST_STD, Split, load_mnist, split_validation
from digitlab.training.evaluate import infer
from digitlab.training.models import create_model
from digitlab.training.progress import EpochBar

NONDIGIT_POOL = 12_000           # letters drawn once per run; each batch samples its share from them


@dataclass
class TrainResult:
    model: nn.Module           # the weights that were saved (EMA weights when EMA is on), in eval mode
    history: list[dict[str, float]]
    out_dir: Path


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a torchrun job (rank 0 of 1 when run alone)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """True unless this is a torchrun worker other than rank 0 (which must neither print nor write)."""
    return int(os.environ.get("RANK", "0")) == 0


def start_distributed(device_name: str) -> tuple[Distributed, bool]:
    """Join the process group torchrun describes in WORLD_SIZE/RANK; returns (where we stand, whether we joined)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), False
    here = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return here, False
    on_gpu = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if on_gpu:
        torch.cuda.set_device(here.local_rank)
    dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    return here, True


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no GPU")
    return torch.device(name)


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum,
                           nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)


def make_schedule(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """The learning-rate schedule; 'onecycle' steps every batch, the others once per epoch."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.learning_rate, epochs=cfg.epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=0.25)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_epochs, gamma=cfg.step_gamma)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=cfg.plateau_patience)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def steps_per_epoch(count: int, batch_size: int, world: Distributed) -> int:
    """Optimiser steps per epoch; with several processes each takes the same number, dropping < world_size batches."""
    total = -(-count // batch_size)
    return total if world.world_size == 1 else total // world.world_size


def batches(split: Split, batch_size: int, generator: torch.Generator, world: Distributed = Distributed()):
    """This process's batches of a shuffled epoch: (uint8 images (B, 28, 28), labels (B,)).

    Every process draws the same order from the same seed and takes every ``world_size``-th batch of it.
    """
    order = torch.randperm(len(split), generator=generator).to(split.images.device)
    starts = range(0, len(split), batch_size)
    for start in list(starts)[world.rank::world.world_size][:steps_per_epoch(len(split), batch_size, world)]:
        idx = order[start:start + batch_size]
        yield split.images[idx], split.labels[idx]


def with_nondigits(images: torch.Tensor, labels: torch.Tensor, pool: torch.Tensor, fraction: float,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``fraction`` x batch images drawn from ``pool`` (uint8 (N, 28, 28) non-digits), labelled 10."""
    count = max(1, round(fraction * len(labels)))
    idx = torch.randint(len(pool), (count,), generator=generator).to(pool.device)
    extra_labels = torch.full((count,), NOT_A_DIGIT_CLASS, dtype=labels.dtype, device=labels.device)
    return torch.cat([images, pool[idx]]), torch.cat([labels, extra_labels])


def to_batch(images: torch.Tensor, cfg: TrainConfig, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 (B, 28, 28) -> normalised float (B, 1, 28, 28), augmented on [0, 1] so the background stays 0."""
    x = images.unsqueeze(1).float().div_(255.0)
    if cfg.augment:
        x = random_affine(x, cfg.augment_config, generator)
    x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


# --- saving and resuming -------------------------------------------------------------------------------------

def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_epoch(out_dir: Path, cfg: TrainConfig, model: nn.Module, eval_model: nn.Module, optimizer, schedule,
                ema: AveragedModel | None, history: list, best: dict, command: str | None) -> None:
    metrics = {k: v for k, v in history[-1].items() if k.startswith("val_")}
    meta = {"config": asdict(cfg), "epoch": history[-1]["epoch"], "metrics": metrics, "command": command}
    checkpoint.save(out_dir / "model.safetensors", eval_model, meta)
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    extra = dict(opt_tensors)
    if ema is not None:
        extra.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    schedule_state = {k: v for k, v in schedule.state_dict().items() if k != "lr_lambdas"}
    resume_meta = meta | {"optimizer": opt_meta, "schedule": schedule_state, "history": history, "best": best}
    checkpoint.save(out_dir / "resume.safetensors", model, resume_meta, extra)
    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1))


def _load_resume(out_dir: Path, cfg: TrainConfig, model: nn.Module, optimizer, schedule,
                 ema: AveragedModel | None) -> tuple[list, dict]:
    path = out_dir / "resume.safetensors"
    tensors, meta = checkpoint.read(path)
    if meta["config"] != asdict(cfg) | {"epochs": meta["config"]["epochs"]}:
        raise ValueError(f"{path} was written with other settings; resume with the same recipe and options "
                         f"(only --epochs may change)")
    model.load_state_dict(checkpoint.build(meta, tensors, str(path)).state_dict())
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    schedule.load_state_dict(meta["schedule"] | ({"lr_lambdas": [None]} if cfg.schedule == "constant" else {}))
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    return meta["history"], meta["best"]


# --- the loop ---------------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, dry_run: bool = False,
          command: str | None = None, quiet: bool = False) -> TrainResult:
    """Train ``cfg.model`` as configured; checkpoints and history go to ``out_dir``.

    ``dry_run`` runs the real path end to end on three batches of one epoch and a small validation set.
    """
    world, joined = start_distributed(cfg.device)
    try:
        return _train(cfg, Path(out_dir), resume, dry_run, command, quiet or not world.is_main, world)
    finally:
        if joined:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, out_dir: Path, resume: bool, dry_run: bool, command: str | None, quiet: bool,
           world: Distributed) -> TrainResult:
    device = resolve_device(cfg.device, world.local_rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    images, labels = load_mnist("train", cfg.data_dir)
    if cfg.limit:
        images, labels = images[:cfg.limit], labels[:cfg.limit]
    train_split, val_split = split_validation(images, labels, cfg.validation_split, cfg.seed)
    if dry_run and val_split is not None:
        val_split = Split(val_split.images[:512], val_split.labels[:512])
    train_split = Split(train_split.images.to(device), train_split.labels.to(device))
    nondigit_pool = None
    if cfg.not_a_digit:
        from digitlab.training.nondigits import letters_in_mnist_form

        nondigit_pool = torch.from_numpy(letters_in_mnist_form(NONDIGIT_POOL, seed=cfg.seed)).to(device)

    model = create_model(cfg.model, **cfg.model_kwargs).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps = steps_per_epoch(len(train_split), cfg.batch_size, world)
    optimizer = make_optimizer(cfg, model)
    schedule = make_schedule(cfg, optimizer, steps)
    # The wrapper averages gradients across processes in backward(); everything else uses the plain module.
    forward = model if world.world_size == 1 else DistributedDataParallel(model)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay else None)

    history: list[dict[str, float]] = []
    best = {"val_accuracy": -1.0, "epoch": 0}
    if resume and (out_dir / "resume.safetensors").exists():
        history, best = _load_resume(out_dir, cfg, model, optimizer, schedule, ema)
        if not quiet:
            print(f"resuming after epoch {len(history)} from {out_dir / 'resume.safetensors'}")
    best_state = None

    for epoch in range(len(history) + 1, cfg.epochs + 1):
        # Each epoch draws from its own seed, so a resumed run repeats exactly what an unbroken one would do.
        epoch_seed = cfg.seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        generator = torch.Generator().manual_seed(epoch_seed)
        epoch_batches = batches(train_split, cfg.batch_size, generator, world)
        if world.world_size > 1:  # the order is shared; each process's augmentation draws must not be
            epoch_batches = iter(list(epoch_batches))
            generator.manual_seed(epoch_seed * world.world_size + world.rank)
        total = 3 if dry_run else steps
        bar = EpochBar(f"epoch {epoch}/{cfg.epochs}", total, enabled=not quiet)
        model.train()
        start = time.perf_counter()
        seen = 0
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for step, (x_uint8, y) in enumerate(epoch_batches, start=1):
            if nondigit_pool is not None:
                x_uint8, y = with_nondigits(x_uint8, y, nondigit_pool, cfg.not_a_digit, generator)
            x = to_batch(x_uint8, cfg, generator)
            logits = forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if cfg.schedule == "onecycle":
                schedule.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += len(y)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            if step % 10 == 0 or step == total:  # reading a value syncs a GPU: not every step
                bar.update(step, loss=loss_sum.item() / seen, acc=correct.item() / seen)
            if step == total:
                break
        train_seconds = time.perf_counter() - start
        if world.world_size > 1:  # the epoch's figures over all processes
            totals = torch.stack([loss_sum, correct.to(loss_sum.dtype), torch.tensor(float(seen), device=device)])
            dist.all_reduce(totals)
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2].item())

        eval_model = ema.module if ema is not None else model
        row = {"epoch": epoch, "train_loss": loss_sum.item() / seen, "train_accuracy": correct.item() / seen,
               "seconds": round(train_seconds, 2),
               "lr": optimizer.param_groups[0]["lr"]}
        if val_split is not None:
            logits = infer(eval_model, val_split.images)
            row["val_loss"] = F.cross_entropy(logits, val_split.labels).item()
            row["val_accuracy"] = (logits.argmax(1) == val_split.labels).double().mean().item()
        if world.world_size > 1:
            # Each process's batch-norm statistics saw its own batches; rank 0's verdict decides for all, so
            # schedules and early stopping stay in step.
            shared = [row]
            dist.broadcast_object_list(shared, src=0)
            row = shared[0]
        history.append(row)
        if cfg.schedule == "step":
            schedule.step()
        elif cfg.schedule == "plateau":
            schedule.step(row.get("val_loss", row["train_loss"]))

        summary = f"loss {row['train_loss']:.4f}" + (
            f" val_loss {row['val_loss']:.4f} val_acc {100 * row['val_accuracy']:.2f}%" if val_split else "")
        bar.close(summary)

        stop = False
        if cfg.early_stopping and "val_accuracy" in row:
            if row["val_accuracy"] > best["val_accuracy"]:
                best = {"val_accuracy": row["val_accuracy"], "epoch": epoch}
                best_state = copy.deepcopy(eval_model.state_dict())
            elif epoch - best["epoch"] >= cfg.early_stopping:
                stop = True
        if world.is_main:
            _save_epoch(out_dir, cfg, model, eval_model, optimizer, schedule, ema, history, best, command)
        if stop:
            if not quiet:
                print(f"early stop: no better validation accuracy since epoch {best['epoch']}")
            break
        if dry_run:
            break

    eval_model = ema.module if ema is not None else model
    if best_state is not None and best["epoch"] != history[-1]["epoch"]:
        # Early stopping hands back the best validation epoch, as Keras' restore_best_weights does.
        eval_model.load_state_dict(best_state)
        meta = {"config": asdict(cfg), "epoch": best["epoch"], "command": command,
                "metrics": {k: v for k, v in history[best["epoch"] - 1].items() if k.startswith("val_")}}
        if world.is_main:
            checkpoint.save(out_dir / "model.safetensors", eval_model, meta)
    return TrainResult(eval_model.eval(), history, out_dir)
