"""What a run changes as it trains: the network (carrying its data configuration), its optimiser, learning-rate
schedule and weight EMA, built from a ``TrainConfig`` in one call.

    state = build_state(cfg, device, steps_per_epoch)   # fresh, or from weights= (fine-tuning)
    state.forward(x)          # the model, or its DistributedDataParallel wrapper under torchrun
    state.eval_model          # the weights that are validated and saved
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from digitlab.training.config import TrainConfig
from digitlab.training.data import attach_data_config
from digitlab.training.distributed import Distributed, share_batch_norm
from digitlab.training.models import create_model
from digitlab.training.optimisers import make_optimizer


def make_schedule(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """The learning-rate schedule; 'onecycle' steps every batch, the others once per epoch (``step_schedule``)."""
    if cfg.schedule == "onecycle":
        # PyTorch divides by the warm-up's length in steps less one: a warm-up of one step or less cannot be planned.
        if cfg.onecycle_warmup * cfg.epochs * steps_per_epoch <= 1:
            needed = math.floor(1 / cfg.onecycle_warmup) + 1
            raise ValueError(f"the one-cycle schedule needs at least {needed} optimiser steps with a warm-up of "
                             f"{cfg.onecycle_warmup:g}, this run has {cfg.epochs * steps_per_epoch} ({cfg.epochs} "
                             f"epoch(s) of {steps_per_epoch} batch(es)): raise --limit or --epochs, or lower "
                             f"--batch-size")
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.learning_rate, epochs=cfg.epochs,
                                                   steps_per_epoch=steps_per_epoch, pct_start=cfg.onecycle_warmup)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_epochs, gamma=cfg.step_gamma)
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


@dataclass
class TrainState:
    """What a run changes as it trains: built by ``build_state``, stepped by ``train_one_epoch``, saved each epoch."""
    model: nn.Module                   # the plain module, carrying its data configuration
    forward: nn.Module                 # what batches go through: the model, its DDP wrapper, or a compiled model
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    ema: AveragedModel | None

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA weights when EMA is on."""
        return self.ema.module if self.ema is not None else self.model


def build_state(cfg: TrainConfig, device: torch.device, steps: int, world: Distributed = Distributed(),
                weights: dict[str, torch.Tensor] | None = None) -> TrainState:
    """A network (given the run's data configuration), its optimiser, schedule and EMA, on ``device``: fresh, or
    starting from ``weights`` (fine-tuning), loaded before the EMA copies them."""
    model = attach_data_config(create_model(cfg.model, **cfg.model_kwargs), cfg.data_config())
    if weights is not None:
        model.load_state_dict(weights)
    model = model.to(device)
    if cfg.sync_batchnorm and world.world_size > 1:
        model = share_batch_norm(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    # The wrapper averages gradients across processes in backward(); everything else uses the plain module.
    forward = model if world.world_size == 1 else DistributedDataParallel(model)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay else None)
    return TrainState(model, forward, optimizer, make_schedule(cfg, optimizer, steps), ema)
