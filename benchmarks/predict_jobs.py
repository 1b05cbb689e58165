"""``digitlab predict --jobs N`` against ``--jobs 1`` on the same 1,000 photo-like files: how the speed grows with
worker processes.

The files are real MNIST test digits redrawn by ``digitlab.datasets.render`` (as in predict_throughput.py). Each
run is the command a user types, start-up and model loading included, writing ``--out`` to a JSON Lines file; the
job counts take turns run after run, so a change in what else the machine does falls on both alike. Every run
prints the load average before it, how busy the whole machine was during it and the share of CPU time the host
stole: on a shared machine these say whether a ratio measured the program or its neighbours. (The workers are
children of multiprocessing's fork server, whose CPU time this process cannot count, so none is printed.)

    python benchmarks/predict_jobs.py                       # --jobs 1 and 2, 3 runs each, ONNX
    python benchmarks/predict_jobs.py --jobs 1 2 4 --runs 5 --backend torch
    python benchmarks/predict_jobs.py --ray                 # and Ray Data on a local Ray with one CPU per job

With ``--ray`` the same files also go through ``digitlab.recognition.cluster`` on a local Ray started once
(``ray.init(num_cpus=max(jobs))``): the start-up is printed apart, and each run is timed from reading the folder to
the last row, as ``--jobs`` runs are from the command to its exit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import StolenTime, cpu_times, hardware, versions  # noqa: E402


def busy_share(before: list[int] | None, after: list[int] | None) -> str:
    """How much of all the machine's CPUs was in use between two ``cpu_times()``, by anything."""
    if not before or not after:
        return "machine busy: unknown"
    spent = [b - a for a, b in zip(before, after)]
    idle = spent[3] + spent[4]  # idle, iowait
    return f"machine busy {100 * (1 - idle / max(1, sum(spent))):.0f}%"


def time_ray(folder: Path, count: int, cpus: int, runs: int) -> None:
    import logging

    import ray

    from digitlab.recognition.cluster import read_images, recognise_dataset

    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    print(f"Ray Data, local Ray with {cpus} CPUs: ray.init {time.perf_counter() - start:.1f} s", flush=True)
    for run in range(runs):
        load, before = os.getloadavg()[0], cpu_times()
        start = time.perf_counter()
        with StolenTime() as stolen:
            rows = recognise_dataset(read_images(str(folder)), actors=cpus).materialize().count()
        wall = time.perf_counter() - start
        print(f"  run {run + 1} Ray, {cpus} actors: {wall:5.1f} s, {rows / wall:4.0f} images/s "
              f"({rows / wall / cpus:.0f} per actor); load average before {load:.1f}, "
              f"{busy_share(before, cpu_times())}; {stolen}", flush=True)
    ray.shutdown()


def main() -> None:
    from predict_throughput import write_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"))
    parser.add_argument("--folder", help="use (and keep) the files in this folder, rendering them if it is empty")
    parser.add_argument("--ray", action="store_true", help="also time Ray Data on a local Ray (digitlab[cluster])")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not any(f.suffix in (".png", ".jpg") for f in folder.iterdir()):
            write_folder(folder, args.count, args.seed)
        count = sum(f.suffix in (".png", ".jpg") for f in folder.iterdir())
        megabytes = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        out = Path(tmp) / "answers.jsonl"
        print(f"digitlab predict FOLDER --jobs N --backend {args.backend} --out answers.jsonl: {count} files "
              f"({megabytes:.0f} MB, JPEG and PNG, 100-1,000 px), {args.runs} runs per job count, taking turns")
        rates: dict[int, list[float]] = {jobs: [] for jobs in args.jobs}
        answers: dict[int, str] = {}
        for run in range(args.runs):
            for jobs in args.jobs:
                command = [sys.executable, "-m", "digitlab.cli", "predict", str(folder), "--jobs", str(jobs),
                           "--backend", args.backend, "--out", str(out), "--overwrite"]
                load = os.getloadavg()[0]
                start, before = time.perf_counter(), cpu_times()
                with StolenTime() as stolen:
                    result = subprocess.run(command, capture_output=True, text=True)
                wall, busy = time.perf_counter() - start, busy_share(before, cpu_times())
                if result.returncode not in (0, 1):
                    sys.exit(f"digitlab predict failed ({result.returncode}): {result.stderr.strip()[-500:]}")
                answers[jobs] = out.read_text()
                rates[jobs].append(count / wall)
                print(f"  run {run + 1} --jobs {jobs}: {wall:5.1f} s, {count / wall:4.0f} images/s; load average "
                      f"before {load:.1f}, {busy}; {stolen}", flush=True)
        if args.ray:
            time_ray(folder, count, max(args.jobs), args.runs)
    same = len(set(answers.values())) == 1
    print(f"answers identical across job counts: {same}")
    base = max(rates[args.jobs[0]])
    for jobs in args.jobs:
        best, mean = max(rates[jobs]), sum(rates[jobs]) / len(rates[jobs])
        print(f"--jobs {jobs}: best {best:.0f} images/s, mean {mean:.0f} (min {min(rates[jobs]):.0f}); "
              f"best against --jobs {args.jobs[0]}: {best / base:.2f}x")
    print(f"hardware: {hardware()}; CPUs this process may use: {len(os.sched_getaffinity(0))}; {autogroup()}\n"
          f"versions: {versions()}")


def autogroup() -> str:
    """Linux's autogroup gives each session, not each process, a fair share of busy CPUs: with other sessions
    running, more processes in this one get no more CPU (docs/scale.md)."""
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return "scheduler autogroup: unknown"
    return "scheduler autogroup: on (CPU shared per session)" if enabled else "scheduler autogroup: off"


if __name__ == "__main__":
    main()
