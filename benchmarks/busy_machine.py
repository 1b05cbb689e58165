"""Training on a busy machine: one epoch's time quiet and beside one busy process per CPU, with OpenMP's waiting
threads spinning (OMP_WAIT_POLICY=ACTIVE, libgomp's own default) and sleeping (PASSIVE, what every digitlab entry
point now sets unless the user set something else; digitlab/threads.py).

Each run is `digitlab train` on the first ``--limit`` training images for one epoch of ``--recipe``, at the default
thread count, the two settings interleaved, so both see the same machine. Results: docs/results.md, 'Training on a
busy machine'.

    python benchmarks/busy_machine.py                       # cnn5x5_dense1000, 20,000 images, 2 runs of each
    python benchmarks/busy_machine.py --recipe default --limit 10000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from machine import StolenTime, background_load, hardware, versions


def one_epoch(recipe: str, limit: int, policy: str) -> float:
    """The epoch's seconds, as the training loop measured them, in a fresh process with the given wait policy."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "digitlab.cli", "train", "--recipe", recipe, "--epochs", "1", "--limit",
                   str(limit), "--validation-split", "0", "--out", out, "--quiet"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=os.environ | {"OMP_WAIT_POLICY": policy})
        with open(os.path.join(out, "history.json")) as f:
            return json.load(f)[0]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="cnn5x5_dense1000")
    parser.add_argument("--limit", type=int, default=20_000, help="training images (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each setting and condition (default: 2)")
    args = parser.parse_args()
    print(f"hardware: {hardware()}\nversions: {versions()}")
    print(f"{args.recipe}, one epoch of {args.limit:,} images, default threads, {args.runs} runs each, interleaved\n")
    print("| machine | OMP_WAIT_POLICY | epoch seconds (each run) | load average before |")
    print("|---|---|---|---|")
    for condition in ("quiet", "busy"):
        with background_load(None if condition == "busy" else 0) as busy, StolenTime() as stolen:
            seconds = {"ACTIVE": [], "PASSIVE": []}
            load = os.getloadavg()[0]
            for _ in range(args.runs):
                for policy in seconds:
                    seconds[policy].append(one_epoch(args.recipe, args.limit, policy))
        for policy, values in seconds.items():
            shown = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {condition} ({len(busy)} busy processes) | {policy} | {shown} "
                  f"| {load:.2f} |")
        print(f"<!-- {condition}: {stolen} -->")


if __name__ == "__main__":
    main()
