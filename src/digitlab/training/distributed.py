"""Training on several processes under ``torchrun``: where this process stands, joining the group, and what all
processes must share.

``loop.train`` needs nothing else to run under torchrun: every process takes its share of each epoch's batches (so
the effective batch is ``batch_size`` times the number of processes), gradients are averaged across processes in
DistributedDataParallel's backward (gloo on CPU, NCCL on GPUs), and only rank 0 prints and writes files.

    torchrun --nproc_per_node 2 -m digitlab.cli train --recipe default
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


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


def share_batch_norm(model: nn.Module) -> nn.Module:
    """The network with every batch-norm layer computing its statistics over all processes' batches together
    (SyncBatchNorm), so that small per-process batches normalise as one large batch would.

    The layers keep their weights, buffers and names, so the checkpoint reads back as the plain network. PyTorch
    synchronises them on GPUs only; ``training_device`` refuses the setting on the CPU before any work.
    """
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def rank_zero_row(row: dict[str, float], world: Distributed) -> dict[str, float]:
    """Rank 0's figures of the epoch, for every process: each process's batch-norm statistics saw its own batches,
    and one verdict keeps schedules and early stopping in step."""
    if world.world_size > 1:
        shared = [row]
        dist.broadcast_object_list(shared, src=0)
        row = shared[0]
    return row
