"""Throughput of ``digitlab predict`` on a folder of 1,000 photo-like files: images per second, end to end.

The files are real MNIST test digits redrawn by ``digitlab.datasets.render`` (100-1,000 px canvases, JPEG and
PNG), written once to a folder; the command is then timed as a user runs it, start-up and model loading included.
The CPU time per image comes from one more run with ``--jobs 1``: by default predict reads in worker processes that
a forkserver starts, and their CPU time never reaches this process's accounting of its children.

    python benchmarks/predict_throughput.py                        # bundled model
    python benchmarks/predict_throughput.py --model runs/x/model.safetensors --count 1000
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_folder(folder: Path, count: int, seed: int) -> None:
    from digitlab.datasets.mnist import read_mnist
    from digitlab.datasets.render import render_set

    images, _ = read_mnist("test")
    for first in range(0, count, 250):
        batch = images[first:min(first + 250, count)]
        for index, (data, style) in enumerate(render_set(batch, seed=seed * 100_000 + first)):
            suffix = "png" if style.jpeg_quality is None else "jpg"
            (folder / f"{first + index:05d}.{suffix}").write_bytes(data)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"digitlab predict failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import hardware, versions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint (default: the bundled model)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_folder(folder, args.count, args.seed)
        megabytes = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        command = [sys.executable, "-m", "digitlab.cli", "predict", str(folder), "--json"]
        if args.model:
            command += ["--model", args.model]
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            result = run(command)
            times.append(time.perf_counter() - start)
        answered = sum('"digit": null' not in line for line in result.stdout.splitlines())
        cpu_start = _children_cpu()
        one_process = time.perf_counter()
        run(command + ["--jobs", "1"])
        one_process = time.perf_counter() - one_process
        cpu = _children_cpu() - cpu_start
    rates = [args.count / t for t in times]
    print(f"digitlab predict FOLDER --json: {args.count} files ({megabytes:.0f} MB, JPEG and PNG, 100-1,000 px), "
          f"model {args.model or 'bundled'}, {args.runs} runs")
    print(f"images/s: mean {sum(rates) / len(rates):.0f}, min {min(rates):.0f}, max {max(rates):.0f} "
          f"(wall {', '.join(f'{t:.1f}' for t in times)} s, start-up and model loading included); "
          f"{answered} answered at the default threshold")
    print(f"CPU time, one process (--jobs 1, {one_process:.1f} s wall): {cpu:.1f} s for {args.count} images "
          f"({1000 * cpu / args.count:.1f} ms each, all threads): {args.count / cpu:.0f} images/s per fully available "
          f"core; wall rates above depend on what else runs")
    print(f"hardware: {hardware()}; load average at the end: {os.getloadavg()[0]:.1f}\nversions: {versions()}")


if __name__ == "__main__":
    main()
