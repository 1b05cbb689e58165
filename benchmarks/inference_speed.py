"""Inference cost of a checkpoint (the bundled model by default): parameters, size on disk, images per second.

    python benchmarks/inference_speed.py [CKPT] [--threads 2] [--seconds 5]

Images per second at batch 1 (one person's drawing) and batch 256 (bulk scoring), eval mode, no autograd, float32,
channels-last, on the CPU with the given number of threads. Prints the load average too: on a shared machine the
figures are only as good as the quiet they were measured in.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from digitlab import checkpoint
from digitlab.models import count_parameters


def images_per_second(model: torch.nn.Module, batch_size: int, seconds: float) -> float:
    x = torch.randn(batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):  # warm-up: first calls pick kernels
            model(x)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            count += batch_size
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=None, help="default: the bundled model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per batch size")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    path = args.checkpoint or checkpoint.BUNDLED
    model, meta = checkpoint.load(path)
    model = model.to(memory_format=torch.channels_last)
    print(f"{meta['arch']}: {count_parameters(model):,} parameters, {os.path.getsize(path) / 1024:.0f} KiB on disk "
          f"({path})")
    for batch_size in (1, 256):
        load = os.getloadavg()[0]
        rate = images_per_second(model, batch_size, args.seconds)
        print(f"batch {batch_size:>3}: {rate:,.0f} images/s  ({args.threads} threads, torch {torch.__version__}, "
              f"load average {load:.2f})")


if __name__ == "__main__":
    main()
