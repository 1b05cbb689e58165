"""Reproduce the recipes (the five tutorials and our default): train each over several seeds, score the test set
once at the end, print the results table.

Every run is the plain command line ``digitlab train --recipe NAME --seed S --out runs/repro/NAME/seedS`` followed by
``digitlab eval --record`` of its final checkpoint; runs already finished are not repeated, so the script can be
stopped and started again, or split across processes (``--threads 1`` twice keeps both cores of a small machine busy).

    python benchmarks/reproduce_tutorials.py --run --seeds 0 1 2              # train what is missing, then the table
    python benchmarks/reproduce_tutorials.py --recipes mlp_3x256 --run        # one recipe
    python benchmarks/reproduce_tutorials.py                                  # just the table from runs/repro
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from digitlab.files import atomic_write_text
from digitlab.training import checkpoint
from digitlab.training.config import RECIPES

REPORTED = {
    "cnn5x5_dense1000": "99.12%",
    "tinyvgg_dropout": "~99.0% (val)",
    "conv32_dense128": "98.20%",
    "conv3_dense64": ">= 98.5%",
    "mlp_3x256": "not reported",
    "default": "target >= 99.70%",
}
TUTORIALS = ("cnn5x5_dense1000", "tinyvgg_dropout", "conv32_dense128", "conv3_dense64", "mlp_3x256")


def run_one(recipe: str, seed: int, out: Path, threads: int) -> None:
    """Train and score one recipe and seed as the command line would, logging wall and CPU seconds."""
    train = ["digitlab", "train", "--recipe", recipe, "--seed", str(seed), "--out", str(out), "--quiet", "--resume"]
    if threads:
        train += ["--threads", str(threads)]
    load = os.getloadavg()[0]
    start_wall, start_cpu = time.time(), os.times()
    subprocess.run([sys.executable, "-m", "digitlab.cli", *train[1:]], check=True)
    end_cpu = os.times()
    timing = {"wall_seconds": round(time.time() - start_wall, 1),
              "cpu_seconds": round(end_cpu.children_user + end_cpu.children_system
                                   - start_cpu.children_user - start_cpu.children_system, 1),
              "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2),
              "threads": threads}
    atomic_write_text(out / "timing.json", json.dumps(timing))
    for tta in ([], ["--tta"]) if recipe == "default" else ([],):
        subprocess.run([sys.executable, "-m", "digitlab.cli", "eval", str(out / "model.safetensors"), "--record",
                        "--json", *tta], check=True, capture_output=True)


def collect(root: Path, recipe: str) -> list[dict]:
    rows = []
    for path in sorted(root.glob(f"{recipe}/seed*/model.safetensors")):
        _, meta = checkpoint.read(path)
        if "test" not in meta or meta["epoch"] != meta["config"]["epochs"]:
            continue  # unfinished, or never scored
        timing_path = path.parent / "timing.json"
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
        rows.append({"seed": meta["config"]["seed"], "accuracy": meta["test"]["accuracy"],
                     "tta_accuracy": meta.get("test_tta", {}).get("accuracy"), **timing})
    return rows


def table(root: Path, recipes: list[str]) -> str:
    lines = ["| recipe | network | reported | measured test accuracy | runs (seeds) | wall s, CPU s per run "
             "(load avg) | command |", "|---|---|---|---|---|---|---|"]
    for recipe in recipes:
        rows = collect(root, recipe)
        if not rows:
            continue
        accuracies = [100 * r["accuracy"] for r in rows]
        spread = f" ± {statistics.stdev(accuracies):.2f}" if len(rows) > 1 else ""
        walls = [r["wall_seconds"] for r in rows if "wall_seconds" in r]
        loads = [r["load_average_before"] for r in rows if "load_average_before" in r]
        cpus = [r["cpu_seconds"] for r in rows if "cpu_seconds" in r]
        wall = (f"{statistics.mean(walls):.0f}, {f'{statistics.mean(cpus):.0f}' if cpus else '-'} "
                f"({statistics.mean(loads):.1f})" if walls else "-")
        seeds = ", ".join(str(r["seed"]) for r in rows)
        each = ", ".join(f"{a:.2f}" for a in accuracies)
        tta = [100 * r["tta_accuracy"] for r in rows if r["tta_accuracy"] is not None]
        if tta:
            each += f"; with shift TTA {statistics.mean(tta):.2f}% (" + ", ".join(f"{a:.2f}" for a in tta) + ")"
        lines.append(f"| `{recipe}` | {RECIPES[recipe]['model']} | {REPORTED.get(recipe, '')} | "
                     f"**{statistics.mean(accuracies):.2f}%**{spread} ({each}) | {len(rows)} ({seeds}) | {wall} | "
                     f"`digitlab train --recipe {recipe} --seed S` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(TUTORIALS), choices=sorted(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--run", action="store_true", help="train and score the runs that are missing")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per run (default: PyTorch's choice)")
    parser.add_argument("--root", type=Path, default=Path("runs/repro"))
    args = parser.parse_args()

    if args.run:
        for recipe in args.recipes:
            for seed in args.seeds:
                out = args.root / recipe / f"seed{seed}"
                if any(r["seed"] == seed for r in collect(args.root, recipe)):
                    continue
                print(f"training {recipe} seed {seed} -> {out}", flush=True)
                run_one(recipe, seed, out, args.threads)
    print(table(args.root, args.recipes))


if __name__ == "__main__":
    main()
