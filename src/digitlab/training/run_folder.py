"""A run's folder: what each epoch writes into it, how a run carries on from it, and what is refused there.

After every epoch ``save_epoch`` writes, atomically, ``model.safetensors`` (the self-describing model),
``resume.safetensors`` (optimiser, schedule and EMA state, and the best weights so far under early stopping),
``history.json`` and, drawn from it, ``history.csv`` and (after long epochs and at the end) ``curves.png``; so Ctrl-C
or a kill loses at most the running epoch, and ``load_resume`` carries on from the last. A folder that holds a
trained model is never written over unasked (``check_out_dir``); ``--tensorboard`` adds event files (``EventLog``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from digitlab.errors import CheckpointError, one_line
from digitlab.files import atomic_write_text
from digitlab.training import checkpoint
from digitlab.training.config import TrainConfig
from digitlab.training.distributed import Distributed
from digitlab.training.figures import write_curves
from digitlab.training.state import TrainState

# what a run writes into its folder (with --tensorboard, also a folder of event files: TENSORBOARD_DIR)
RUN_FILES = ("model.safetensors", "resume.safetensors", "history.json", "history.csv", "curves.png")
TENSORBOARD_DIR = "tensorboard"
# curves.png is redrawn after every epoch of at least this many seconds (the default recipe's), where a drawing is a
# small share of the epoch, and at the end of every run; not after each of a short run's epochs, where it is not
# (docs/results.md, 'Time to accuracy').
CURVES_AFTER = 20.0


def check_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to replace a trained model unasked, and to "resume" where there is nothing to resume."""
    if resume:
        if not (out_dir / "resume.safetensors").is_file():
            raise ValueError(f"--resume: {out_dir} holds no run to resume (no resume.safetensors); leave out --resume "
                             f"to start one")
    elif not overwrite and (out_dir / "model.safetensors").exists():
        raise ValueError(f"{out_dir} already holds a trained model: continue it with --resume, or replace it with "
                         f"--overwrite (or choose another --out)")


def remove_leftovers(out_dir: Path) -> None:
    """Delete the hidden temporary files that a write killed half-way left behind (files.atomic_write names them)."""
    for name in RUN_FILES:
        for leftover in out_dir.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def check_tensorboard() -> None:
    """A one-line error, before any training, when ``--tensorboard`` is asked for without its package."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ValueError("--tensorboard needs the tensorboard package: pip install 'digitlab[tensorboard]' "
                         "(curves.png and history.csv are written without it)")


class EventLog:
    """Each epoch's figures as TensorBoard scalars under ``out_dir/tensorboard``; does nothing when not asked for."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out_dir / TENSORBOARD_DIR))

    def add(self, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key.replace("_", "/", 1), value, global_step=int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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


def folder_summaries(cfg: TrainConfig) -> list[dict]:
    """What a checkpoint records of each labelled folder the run trains on: its size, checksum and class counts."""
    if not cfg.folders():
        return []  # reading images is not imported for MNIST alone
    from digitlab.datasets.folders import load_folder

    return [load_folder(source).summary() for source in cfg.folders()]


def model_metadata(cfg: TrainConfig, row: dict[str, float], command: str | None,
                    folders: list[dict] | None = None) -> dict:
    """What model.safetensors records about the run and the epoch its weights come from."""
    from digitlab.datasets.writers import checksums

    return {"config": cfg.as_record(), "epoch": row["epoch"], "command": command,
            "metrics": {k: v for k, v in row.items() if k.startswith(("val_", "test_"))}} | (
        {"data_folders": folders} if folders else {}) | (
        {"other_writers_sha256": checksums(cfg.realdata_dir)} if cfg.other_writers or cfg.real_letters else {})


def save_epoch(out_dir: Path, cfg: TrainConfig, state: TrainState, history: list, best: dict,
               best_weights: dict[str, torch.Tensor] | None, command: str | None,
               folders: list[dict] | None = None, last: bool = True) -> None:
    """Write the epoch's model, everything a resume needs (with the best weights so far) and the history, with its
    table and, after a long epoch or the ``last``, its curves (CURVES_AFTER)."""
    meta = model_metadata(cfg, history[-1], command, folders)
    checkpoint.save(out_dir / "model.safetensors", state.eval_model, meta)
    opt_tensors, opt_meta = _flatten_optimizer(state.optimizer.state_dict())
    extra = dict(opt_tensors)
    if state.ema is not None:
        extra.update({f"ema.{k}": v for k, v in state.ema.state_dict().items()})
    if best_weights is not None:
        extra.update({f"best.{k}": v for k, v in best_weights.items()})
    schedule_state = {k: v for k, v in state.schedule.state_dict().items() if k != "lr_lambdas"}
    resume_meta = meta | {"optimizer": opt_meta, "schedule": schedule_state, "history": history, "best": best}
    checkpoint.save(out_dir / "resume.safetensors", state.model, resume_meta, extra)
    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1))
    write_curves(history, out_dir, draw=last or history[-1].get("seconds", 0) >= CURVES_AFTER)


def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor its parameter's memory layout. A file holds them contiguous, while a
    channels-last network's weights are not; a fused optimiser walks both as flat memory, so a mismatch would mix
    up their elements."""
    for param, entry in optimizer.state.items():
        for key, value in entry.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                entry[key] = torch.empty_like(param).copy_(value)


def load_resume(out_dir: Path, cfg: TrainConfig,
                state: TrainState) -> tuple[list, dict, dict[str, torch.Tensor] | None]:
    """Restore ``state`` from resume.safetensors; returns (history, best epoch so far, its weights or None)."""
    path = out_dir / "resume.safetensors"
    tensors, meta = checkpoint.read(path)
    try:  # compared as recorded (JSON), with today's defaults for settings an older file did not have
        same = TrainConfig.from_dict(meta["config"] | {"epochs": cfg.epochs}).as_record() == cfg.as_record()
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(f"{path} was written with other settings; resume with the same recipe and options "
                         f"(only --epochs may change)")
    planned = meta["config"].get("epochs")
    if cfg.schedule == "onecycle" and planned != cfg.epochs:
        # The schedule's whole curve is fixed by the run's length; PyTorch would fail epochs later, half-way.
        raise ValueError(f"{path}: a one-cycle schedule is planned for the whole run ({planned} epochs) and cannot "
                         f"be stretched to {cfg.epochs}; resume with --epochs {planned}, or start a new run "
                         f"(another --out, or --overwrite)")
    state.model.load_state_dict(checkpoint.build(meta, tensors, str(path)).state_dict())
    try:  # what only a resume file holds; a file that lacks it or holds it mangled is no resume file
        state.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        match_param_layout(state.optimizer)
        state.schedule.load_state_dict(meta["schedule"] | ({"lr_lambdas": [None]} if cfg.schedule == "constant"
                                                           else {}))
        if state.ema is not None:
            state.ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        history, best = list(meta["history"]), dict(meta["best"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a whole resume file (its optimiser, schedule or history cannot be read: "
                              f"{one_line(exc, 80)}); start the run again with --overwrite") from None
    best_weights = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    return history, best, best_weights or None


def resume_run(out_dir: Path, cfg: TrainConfig, state: TrainState, world: Distributed,
               quiet: bool) -> tuple[list, dict, dict[str, torch.Tensor] | None]:
    """``load_resume``, and on rank 0 history.json and its table and curves written again where they do not match
    the resume file: a kill between the resume file and history.json left the latter an epoch short, and a run
    begun before the curves were drawn has none."""
    history, best, best_weights = load_resume(out_dir, cfg, state)
    if world.is_main:
        record = json.dumps(history, indent=1)
        history_path = out_dir / "history.json"
        if not history_path.is_file() or history_path.read_text() != record:
            atomic_write_text(history_path, record)
            write_curves(history, out_dir)
        elif not (out_dir / "curves.png").is_file() or not (out_dir / "history.csv").is_file():
            write_curves(history, out_dir)
    if not quiet:
        print(f"resuming after epoch {len(history)} from {out_dir / 'resume.safetensors'}")
    return history, best, best_weights
