"""How long ``digitlab report`` takes on the bundled model: the whole MNIST test set scored, seven pictures and the
HTML page written, timed as a user runs it (a new process: start-up, imports and model loading included).

    python benchmarks/report_speed.py                 # 3 runs
    python benchmarks/report_speed.py --runs 5 --lang zh-CN
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 30.0


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import StolenTime, hardware, versions

    from digitlab.languages import ALIASES, LANGUAGES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lang", choices=[*LANGUAGES, *ALIASES], default="en")
    args = parser.parse_args()

    print(hardware())
    print(versions())
    seconds, cpu = [], []
    with StolenTime() as stolen, tempfile.TemporaryDirectory(prefix="digitlab-report-") as scratch:
        for run in range(args.runs):
            out = Path(scratch) / f"run{run}"
            start, cpu_start = time.perf_counter(), _children_cpu()
            subprocess.run([sys.executable, "-m", "digitlab", "report", "--out", str(out), "--lang", args.lang],
                           check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
            seconds.append(time.perf_counter() - start)
            cpu.append(_children_cpu() - cpu_start)
            print(f"run {run + 1}: {seconds[-1]:.1f} s, {cpu[-1]:.1f} s of CPU time ({len(list(out.iterdir()))} "
                  f"files)", flush=True)
    print(stolen)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          f"(other work on the machine slows every run)")
    print(f"digitlab report, bundled model, 10,000 test images: mean {statistics.mean(seconds):.1f} s, "
          f"min {min(seconds):.1f} s, max {max(seconds):.1f} s over {len(seconds)} runs "
          f"(target {TARGET_SECONDS:.0f} s: {'met' if max(seconds) < TARGET_SECONDS else 'missed'}); CPU time "
          f"{min(cpu):.1f}-{max(cpu):.1f} s")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
