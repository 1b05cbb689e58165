"""Seconds per training epoch and peak memory for each tutorial network, measured through `digitlab train`.

Each network trains in its own process with its recipe's batch size and optimiser on all 60,000 images for
``--epochs`` epochs (no validation split, so every epoch is a full pass); the table shows each epoch's time as
the training loop measured it and the peak resident memory of the process.

    python benchmarks/epoch_speed.py                   # all five tutorial networks, 2 epochs each
    python benchmarks/epoch_speed.py --networks cnn5x5_dense1000 --epochs 3

The reference points it is compared with (Keras and a plain PyTorch loop on the same network) and the results are
in docs/results.md, 'Training speed'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUTORIALS = ("cnn5x5_dense1000", "tinyvgg_dropout", "conv32_dense128", "conv3_dense64", "mlp_3x256")


def run_one(network: str, epochs: int, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "digitlab.cli", "train", "--recipe", network, "--epochs", str(epochs),
                   "--validation-split", "0", "--out", out, "--quiet"]
        if threads:
            command += ["--threads", str(threads)]
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak resident memory
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if child.returncode != 0:
            raise SystemExit(f"{network}: digitlab train exited {child.returncode}")
        history = json.loads((Path(out) / "history.json").read_text())
    return {"network": network, "epoch_seconds": [row["seconds"] for row in history],
            "train_accuracy": history[-1]["train_accuracy"], "process_seconds": round(wall, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(TUTORIALS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print(f"# command: python benchmarks/epoch_speed.py --epochs {args.epochs} --networks {' '.join(args.networks)}")
    print(f"{'network':<20}{'epoch seconds':<28}{'peak RSS':>10}  {'train acc':>9}")
    results = []
    for network in args.networks:
        row = run_one(network, args.epochs, args.threads)
        results.append(row)
        seconds = ", ".join(f"{s:.1f}" for s in row["epoch_seconds"])
        peak = f"{row['peak_rss_mib']} MiB"
        print(f"{network:<20}{seconds:<28}{peak:>10}  {100 * row['train_accuracy']:8.2f}%", flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
