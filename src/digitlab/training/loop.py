"""Training: a ``TrainConfig`` through a few small functions, in the order the data flows.

    load_data -> build_state -> per epoch: train_one_epoch, validate, save_epoch -> the best or last weights

``train`` is the run that strings them together (resume, early stopping, torchrun); benchmarks call the same
functions. The whole training set stays in memory as uint8 tensors (on the GPU when there is one); each step
indexes a batch, augments it as one tensor and takes an optimiser step - no per-sample Python, no loader workers.
After every epoch the run validates and writes its folder (``run_folder``: the model, what a resume needs, the
history and its curves), so Ctrl-C or a kill loses at most the running epoch and ``resume=True`` carries on from
the last. Under ``torchrun`` the same call trains on every process (``distributed``).

    result = train(TrainConfig(model="cnn5x5_dense1000", epochs=10), out_dir="runs/cnn5x5")
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from digitlab.allocator import keep_freed_memory
from digitlab.errors import TrainingError
from digitlab.labels import NOT_A_DIGIT
from digitlab.threads import available_cpus
from digitlab.training import checkpoint
from digitlab.training.augment import random_affine
from digitlab.training.config import MNIST, SYNC_BATCHNORM_ON_CPU, TrainConfig
from digitlab.training.data import DataConfig, Split, data_config_of, load_mnist, split_validation
from digitlab.training.distributed import Distributed, rank_zero_row, start_distributed
from digitlab.training.evaluate import infer
from digitlab.training.progress import EpochBar
from digitlab.training.run_folder import (EventLog, check_out_dir, check_tensorboard, folder_summaries,
                                          model_metadata, remove_leftovers, resume_run, save_epoch)
from digitlab.training.state import TrainState, build_state

NONDIGIT_POOL = 12_000           # letters drawn once per run; each batch samples its share from them


@dataclass
class TrainResult:
    model: nn.Module           # the weights that were saved (EMA weights when EMA is on), in eval mode
    history: list[dict[str, float]]
    out_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)  # what model.safetensors records of those weights


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no GPU")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} was asked for, but PyTorch sees {torch.cuda.device_count()} GPU(s), "
                         f"numbered from 0")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for, but PyTorch sees no Apple GPU")
    return torch.device(name)


# --- the data --------------------------------------------------------------------------------------------------------

def training_images(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image the run's ``data`` names, in order: MNIST's training set (its first ``limit`` images when a limit
    is set) and the usable images of each labelled folder (``folders``), labelled by the run's class list."""
    images, labels = [], []
    for source in cfg.data:
        if source == MNIST:
            found = load_mnist("train", cfg.data_dir)
            if cfg.limit:
                found = found[0][:cfg.limit], found[1][:cfg.limit]
        else:
            from digitlab.datasets.folders import for_model, load_folder

            usable = for_model(load_folder(source), cfg.data_config().classes)
            found = torch.from_numpy(usable[0]), torch.from_numpy(usable[1])
        images.append(found[0])
        labels.append(found[1])
    return torch.cat(images), torch.cat(labels)


def split_training_set(cfg: TrainConfig) -> tuple[Split, Split | None]:
    """The images a run trains on and the validation split it holds out, from its config alone (data, limit,
    fraction, seed): the same split every time, so calibrating a checkpoint later finds the very images it never
    trained on (as long as its folders hold the same files: the checkpoint records their checksum)."""
    images, labels = training_images(cfg)
    if not len(labels):
        raise ValueError(f"no usable training images in {', '.join(cfg.data)}")
    return split_validation(images, labels, cfg.validation_split, cfg.seed)


def load_data(cfg: TrainConfig, device: torch.device, dry_run: bool = False,
              pool=None) -> tuple[Split, Split | None, torch.Tensor | None]:
    """(training split on ``device``, validation split or None, letters taught as "not a digit" or None).

    A dry run validates on 512 images only. ``pool``: the run's ``writers_pool`` when the caller has it already.
    """
    train_split, val_split = split_training_set(cfg)
    if dry_run and val_split is not None:
        val_split = Split(val_split.images[:512], val_split.labels[:512])
    train_split = Split(train_split.images.to(device), train_split.labels.to(device))
    nondigits = None
    if cfg.not_a_digit:
        from digitlab.datasets.nondigits import letters_in_mnist_form

        letters = letters_in_mnist_form(NONDIGIT_POOL, seed=cfg.seed)
        if cfg.real_letters:
            letters = np.concatenate([letters, (pool or writers_pool(cfg)).letters])
        nondigits = torch.from_numpy(letters).to(device)
    return train_split, val_split, nondigits


def writers_pool(cfg: TrainConfig):
    """The training part of the real handwriting by other writers, in MNIST's form (``writers.training_pool``), or
    None when the run learns nothing from it. Read once a run: its letters and its digits come from the one pool."""
    if not (cfg.other_writers or cfg.real_letters):
        return None
    from digitlab.datasets.writers import training_pool

    return training_pool(cfg.realdata_dir, seed=0)


def other_writers_split(cfg: TrainConfig, pool, device: torch.device) -> Split | None:
    """Real digits by writers outside MNIST that each batch carries ``other_writers`` of, from ``pool``, or None."""
    if not cfg.other_writers:
        return None
    return Split(torch.from_numpy(pool.digits).to(device), torch.from_numpy(pool.labels).to(device))


def steps_per_epoch(count: int, batch_size: int, world: Distributed = Distributed()) -> int:
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


def with_extra(images: torch.Tensor, labels: torch.Tensor, pool: Split, fraction: float,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``fraction`` x batch images drawn at random from ``pool``, with their labels."""
    count = max(1, round(fraction * len(labels)))
    idx = torch.randint(len(pool), (count,), generator=generator).to(pool.images.device)
    return torch.cat([images, pool.images[idx]]), torch.cat([labels, pool.labels[idx].to(labels.dtype)])


def with_nondigits(images: torch.Tensor, labels: torch.Tensor, pool: torch.Tensor, fraction: float,
                   generator: torch.Generator, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``fraction`` x batch images drawn from ``pool`` (uint8 (N, 28, 28) non-digits), labelled ``label``."""
    labelled = Split(pool, torch.full((len(pool),), label, dtype=labels.dtype, device=pool.device))
    return with_extra(images, labels, labelled, fraction, generator)


def to_batch(images: torch.Tensor, cfg: TrainConfig, data: DataConfig,
             generator: torch.Generator | None) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) normalised as ``data`` says, augmented on [0, 1] first so the
    background stays 0."""
    x = images.unsqueeze(1).float().div_(255.0)
    if cfg.augment:
        x = random_affine(x, cfg.augment_config, generator)
    x = x.sub_(data.mean).div_(data.std)
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


# --- one epoch, one validation ---------------------------------------------------------------------------------------

def autocast_for(cfg: TrainConfig, device: torch.device) -> AbstractContextManager:
    """What a training step's forward pass and loss run under: bfloat16 autocast when ``cfg.bf16`` (convolutions
    and matrix products in bfloat16, on AMX or AVX-512 BF16 where the CPU has them; the weights, their gradients
    and the optimiser stay float32), else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's random draws (batch order, augmentation, letters, dropout).

    It depends on the run's seed and the epoch alone, so a resumed run repeats exactly what an unbroken one would do.
    """
    return seed * 100_003 + epoch


def _set_training_mode(model: nn.Module, freeze_norm: bool) -> None:
    """Put ``model`` in training mode; with ``freeze_norm``, its batch-norm layers stay in evaluation mode, so they
    normalise with their running statistics and leave them as they are."""
    model.train()
    if freeze_norm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _learn_from(loss: torch.Tensor, cfg: TrainConfig, state: TrainState) -> None:
    """One optimiser step down ``loss``'s gradient, and the per-batch updates that follow it: the one-cycle
    schedule's step and the EMA's average."""
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    if cfg.schedule == "onecycle":
        state.schedule.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)


def train_one_epoch(cfg: TrainConfig, state: TrainState, split: Split, epoch: int,
                    world: Distributed = Distributed(), *, nondigits: torch.Tensor | None = None,
                    others: Split | None = None, max_steps: int | None = None, bar: EpochBar | None = None,
                    autocast: AbstractContextManager = nullcontext(),
                    freeze_norm: bool = False) -> dict[str, float]:
    """One pass over this process's share of ``split`` (at most ``max_steps`` batches), each batch carrying
    ``cfg.not_a_digit`` of letters from ``nondigits`` and ``cfg.other_writers`` of other writers' digits from
    ``others`` when given.

    Returns the epoch's ``train_loss`` and ``train_accuracy`` (over all processes) and its ``seconds``. The
    one-cycle schedule and the EMA are stepped with every batch; the per-epoch schedules are ``step_schedule``'s.
    ``freeze_norm`` (fine-tuning) keeps batch norm's running statistics as they are and normalises with them, so
    a few new images do not move what every input is measured against; its scale and shift still learn.
    """
    seed = epoch_seed(cfg.seed, epoch)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    epoch_batches = batches(split, cfg.batch_size, generator, world)
    if world.world_size > 1:  # the order is shared; each process's augmentation draws must not be
        epoch_batches = iter(list(epoch_batches))
        generator.manual_seed(seed * world.world_size + world.rank)
    total = steps_per_epoch(len(split), cfg.batch_size, world)
    total = total if max_steps is None else min(max_steps, total)
    data = data_config_of(state.model)
    not_a_digit = data.classes.index(NOT_A_DIGIT) if nondigits is not None else None

    _set_training_mode(state.model, freeze_norm)
    start = time.perf_counter()
    device = split.labels.device
    seen = 0
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for step, (x_uint8, y) in enumerate(epoch_batches, start=1):
        if nondigits is not None:
            x_uint8, y = with_nondigits(x_uint8, y, nondigits, cfg.not_a_digit, generator, not_a_digit)
        if others is not None:
            x_uint8, y = with_extra(x_uint8, y, others, cfg.other_writers, generator)
        with autocast:
            logits = state.forward(to_batch(x_uint8, cfg, data, generator))
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        _learn_from(loss, cfg, state)
        seen += len(y)
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        if bar is not None and bar.enabled and (step % 10 == 0 or step == total):  # a value read syncs a GPU
            bar.update(step, loss=loss_sum.item() / seen, acc=correct.item() / seen)
        if step == total:
            break
    seconds = time.perf_counter() - start
    if world.world_size > 1:  # the epoch's figures over all processes
        totals = torch.stack([loss_sum, correct.to(loss_sum.dtype), torch.tensor(float(seen), device=device)])
        dist.all_reduce(totals)
        loss_sum, correct, seen = totals[0], totals[1], int(totals[2].item())
    return {"train_loss": loss_sum.item() / seen, "train_accuracy": correct.item() / seen,
            "seconds": round(seconds, 2)}


def measure_test_accuracy(model: nn.Module, cfg: TrainConfig, dry_run: bool = False) -> dict[str, float]:
    """``test_accuracy`` (and ``test_images``, the count) of ``model`` on the MNIST test set; 512 images in a dry run.

    A run without a validation split reports this at its end, so a user learns how good the model is.
    """
    images, labels = load_mnist("test", cfg.data_dir)
    if dry_run:
        images, labels = images[:512], labels[:512]
    logits = infer(model, images)
    return {"test_accuracy": (logits.argmax(1).cpu() == labels).double().mean().item(), "test_images": len(labels)}


def validate(model: nn.Module, split: Split) -> dict[str, float]:
    """``val_loss`` and ``val_accuracy`` of ``model`` on a held-out split."""
    logits = infer(model, split.images)
    return {"val_loss": F.cross_entropy(logits, split.labels).item(),
            "val_accuracy": (logits.argmax(1) == split.labels).double().mean().item()}


def step_schedule(cfg: TrainConfig, schedule, row: dict[str, float]) -> None:
    """The once-per-epoch schedules take their step after the epoch (``plateau`` watches the validation loss)."""
    if cfg.schedule == "step":
        schedule.step()
    elif cfg.schedule == "plateau":
        schedule.step(row.get("val_loss", row["train_loss"]))


def stop_early(cfg: TrainConfig, history: list[dict[str, float]], best: dict[str, float]) -> bool:
    """True once ``early_stopping`` epochs have passed without a better validation accuracy."""
    return bool(cfg.early_stopping and history and "val_accuracy" in history[-1]
                and history[-1]["epoch"] - best["epoch"] >= cfg.early_stopping)


# --- the run ---------------------------------------------------------------------------------------------------------

def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, dry_run: bool = False,
          command: str | None = None, quiet: bool = False, overwrite: bool = False,
          tensorboard: bool = False) -> TrainResult:
    """Train ``cfg.model`` as configured; checkpoints and history go to ``out_dir``.

    ``dry_run`` runs the real path end to end on three batches of one epoch and a small validation set.
    A folder that already holds a model is refused unless ``resume`` (continue it) or ``overwrite`` (replace it).
    ``tensorboard`` also writes each epoch's figures as TensorBoard event files (needs the ``tensorboard`` package).
    """
    check_out_dir(Path(out_dir), resume, overwrite)
    if tensorboard:
        check_tensorboard()
    world, joined = start_distributed(cfg.device)
    try:
        result = _run(cfg, Path(out_dir), resume, dry_run, command, quiet or not world.is_main, world,
                      tensorboard and world.is_main)
        if joined:
            # Rank 0 still writes its checkpoint when the others finish; a process that tears down its gloo
            # connections while a peer still holds them can abort ("terminate called without an active
            # exception"), so every process waits here until all are done.
            dist.barrier()
        return result
    finally:
        if joined:
            dist.destroy_process_group()


def _run(cfg: TrainConfig, out_dir: Path, resume: bool, dry_run: bool, command: str | None, quiet: bool,
         world: Distributed, tensorboard: bool = False) -> TrainResult:
    device = training_device(cfg, world)
    torch.manual_seed(cfg.seed)
    pool = writers_pool(cfg)
    train_split, val_split, nondigits = load_data(cfg, device, dry_run, pool)
    others = other_writers_split(cfg, pool, device)
    folders = folder_summaries(cfg)
    steps = steps_per_epoch(len(train_split), cfg.batch_size, world)
    state = build_state(cfg, device, steps, world)
    steps_run = min(3, steps) if dry_run else steps

    if world.is_main and out_dir.is_dir():
        remove_leftovers(out_dir)
    # best_weights: the eval model's weights at the best validation epoch, kept only for early stopping
    history, best, best_weights = (resume_run(out_dir, cfg, state, world, quiet) if resume
                                   else ([], {"val_accuracy": -1.0, "epoch": 0}, None))

    events = EventLog(out_dir, tensorboard)
    try:
        while len(history) < cfg.epochs and not stop_early(cfg, history, best):
            epoch = len(history) + 1
            bar = EpochBar(f"epoch {epoch}/{cfg.epochs}", steps_run, enabled=not quiet)
            row = {"epoch": epoch} | train_one_epoch(cfg, state, train_split, epoch, world, nondigits=nondigits,
                                                     others=others, max_steps=steps_run, bar=bar,
                                                     autocast=autocast_for(cfg, device))
            row["lr"] = state.optimizer.param_groups[0]["lr"]
            if val_split is not None:
                row |= validate(state.eval_model, val_split)
            row = rank_zero_row(row, world)
            if not math.isfinite(row["train_loss"]):
                # Weights that are no longer numbers are never written: the last finished epoch stays as it was.
                bar.close("the loss is not a number")
                raise diverged(cfg, epoch, out_dir if history and not dry_run else None)
            history.append(row)
            step_schedule(cfg, state.schedule, row)
            bar.close(f"loss {row['train_loss']:.4f}" + (
                f" val_loss {row['val_loss']:.4f} val_acc {100 * row['val_accuracy']:.2f}%" if val_split else ""))

            if cfg.early_stopping and row.get("val_accuracy", -1.0) > best["val_accuracy"]:
                best = {"val_accuracy": row["val_accuracy"], "epoch": epoch}
                best_weights = copy.deepcopy(state.eval_model.state_dict())
            last = dry_run or len(history) == cfg.epochs or stop_early(cfg, history, best)
            # Nothing held out: the MNIST test set says how good it is (when the run learnt MNIST's digits at all).
            if last and val_split is None and world.is_main and MNIST in cfg.data:
                row |= measure_test_accuracy(state.eval_model, cfg, dry_run)
            if world.is_main:
                save_epoch(out_dir, cfg, state, history, best, best_weights, command, folders, last)
                events.add(row)
            if dry_run:
                break
    finally:
        events.close()
    if stop_early(cfg, history, best) and not quiet:
        print(f"early stop: no better validation accuracy since epoch {best['epoch']}")
    model, saved = restore_best(state.eval_model, history, best, best_weights)
    if saved["epoch"] != history[-1]["epoch"] and world.is_main:  # early stopping handed back an earlier epoch
        checkpoint.save(out_dir / "model.safetensors", model, model_metadata(cfg, saved, command, folders))
    return TrainResult(model.eval(), history, out_dir, model_metadata(cfg, saved, command)["metrics"])


def training_device(cfg: TrainConfig, world: Distributed) -> torch.device:
    """The device this process trains on (under torchrun, its own GPU), with the CPU set up (``use_cpu``);
    SyncBatchNorm is refused before any work where it would run on the CPU."""
    device = resolve_device(cfg.device, world.local_rank)
    if cfg.sync_batchnorm and device.type == "cpu":  # --device auto on a machine without a GPU
        raise ValueError(SYNC_BATCHNORM_ON_CPU)
    use_cpu(cfg.threads)
    return device


def use_cpu(threads: int) -> None:
    """Train on ``threads`` CPU threads, or with 0 on as many as PyTorch would take but no more than this process
    may run on (PyTorch counts the host's cores, not this process's share of them), with freed memory kept for the
    next step (``allocator.keep_freed_memory``)."""
    torch.set_num_threads(threads or min(torch.get_num_threads(), available_cpus()))
    keep_freed_memory()


def diverged(cfg: TrainConfig, epoch: int, kept_in: Path | None) -> TrainingError:
    """The error of a run whose loss is no longer a number in ``epoch``, saying where its last finished epoch is kept
    (``kept_in``; None: nothing was)."""
    kept = f"epoch {epoch - 1} is kept in {kept_in}" if kept_in is not None else "nothing was kept"
    return TrainingError(f"training diverged in epoch {epoch}: the loss is no longer a number (is the learning "
                         f"rate, {cfg.learning_rate:g}, too high?); {kept}")


def restore_best(model: nn.Module, history: list[dict[str, float]], best: dict,
                 best_weights: dict[str, torch.Tensor] | None) -> tuple[nn.Module, dict[str, float]]:
    """(the model, the epoch's row its weights are from): the last epoch's, or under early stopping the best
    validation epoch's, loaded into ``model``, as Keras' restore_best_weights does."""
    if best_weights is None or best["epoch"] == history[-1]["epoch"]:
        return model, history[-1]
    model.load_state_dict(best_weights)
    return model, history[best["epoch"] - 1]
