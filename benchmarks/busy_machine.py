"""Training on a busy machine: one epoch's time quiet and beside one busy process per CPU, with OpenMP's waiting
threads spinning (OMP_WAIT_POLICY=ACTIVE, close to libgomp's own default), sleeping at once (PASSIVE) and as every
digitlab entry point sets them unless the user set something else: a short spin, then sleep (digitlab/threads.py).

Each run is `digitlab train` on the first ``--limit`` training images for one epoch of ``--recipe``, at the default
thread count, the two settings interleaved, so both see the same machine. Results: docs/results.md, 'Training on a
busy machine'.

    python benchmarks/busy_machine.py                       # cnn5x5_dense1000, 20,000 images, 2 runs of each
    python benchmarks/busy_machine.py --recipe default --limit 10000 --runs 3
    python benchmarks/busy_machine.py --recipe fast --limit 30000 --spincount 2000 --spincount 20000

``--spincount N`` adds another spin before sleeping (GOMP_SPINCOUNT; libgomp counts roughly 100,000 rounds a
millisecond).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from digitlab.threads import SPIN_COUNT, SPIN_ROUNDS, WAIT_POLICY

from machine import StolenTime, background_load, hardware, versions


def one_epoch(recipe: str, limit: int, setting: dict[str, str]) -> float:
    """The epoch's seconds, as the training loop measured them, in a fresh process with the given OpenMP
    environment."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "digitlab.cli", "train", "--recipe", recipe, "--epochs", "1", "--limit",
                   str(limit), "--validation-split", "0", "--out", out, "--quiet"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env={k: v for k, v in os.environ.items() if k not in (WAIT_POLICY, SPIN_COUNT)} | setting)
        with open(os.path.join(out, "history.json")) as f:
            return json.load(f)[0]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="cnn5x5_dense1000")
    parser.add_argument("--limit", type=int, default=20_000, help="training images (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each setting and condition (default: 2)")
    parser.add_argument("--spincount", type=int, action="append", default=[], metavar="N",
                        help="also PASSIVE with GOMP_SPINCOUNT=N (repeatable)")
    args = parser.parse_args()
    print(f"hardware: {hardware()}\nversions: {versions()}")
    print(f"{args.recipe}, one epoch of {args.limit:,} images, default threads, {args.runs} runs each, interleaved\n")
    settings = {"ACTIVE": {WAIT_POLICY: "ACTIVE"}, "PASSIVE": {WAIT_POLICY: "PASSIVE"},
                f"digitlab's default: PASSIVE, GOMP_SPINCOUNT={SPIN_ROUNDS}": {}}  # the entry point sets it
    for count in args.spincount:
        settings[f"PASSIVE, GOMP_SPINCOUNT={count}"] = {WAIT_POLICY: "PASSIVE", SPIN_COUNT: str(count)}
    print("| machine | OpenMP waiting | epoch seconds (each run) | load average before |")
    print("|---|---|---|---|")
    for condition in ("quiet", "busy"):
        with background_load(None if condition == "busy" else 0) as busy, StolenTime() as stolen:
            seconds: dict[str, list[float]] = {name: [] for name in settings}
            load = os.getloadavg()[0]
            for _ in range(args.runs):
                for name, setting in settings.items():
                    seconds[name].append(one_epoch(args.recipe, args.limit, setting))
        for name, values in seconds.items():
            shown = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {condition} ({len(busy)} busy processes) | {name} | {shown} "
                  f"| {load:.2f} |")
        print(f"<!-- {condition}: {stolen} -->")


if __name__ == "__main__":
    main()
