"""What every benchmark prints beside its numbers: the machine and the package versions it ran with, and how much
of the CPUs' time the host took back while it ran.

    from machine import hardware, versions      # benchmarks run as scripts, so this folder is on sys.path

    with StolenTime() as stolen:               # on a virtual machine, the hypervisor's share ("steal" in top)
        ...
    print(stolen)                               # "CPU time stolen by the host: 3.1%"
    stolen_share(before, cpu_times())           # the same over any interval, before = cpu_times()

    with background_load():                     # one busy process per CPU, for "quiet and loaded" side by side
        ...
    print(conditions())                         # "load average 2.31, stolen 0.4%": beside every figure
"""

from __future__ import annotations

import multiprocessing
import os
import platform
from contextlib import contextmanager
from pathlib import Path

PACKAGES = ("digitlab", "torch", "onnxruntime", "fastapi", "uvicorn", "httptools", "uvloop", "numpy", "pillow",
            "pyspng", "zlib-ng", "opencv-python-headless")


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


class StolenTime:
    """The share of all CPU time the hypervisor gave to other guests while the block ran (Linux /proc/stat; None
    elsewhere). On a shared VM it can change from minute to minute, and speed and tail latency with it
    (docs/serving.md, 'How the load test measures'): a benchmark that does not say how much was stolen cannot be
    compared with another."""

    def __enter__(self) -> "StolenTime":
        self.before, self.fraction = cpu_times(), None
        return self

    def __exit__(self, *exc) -> None:
        self.fraction = stolen_share(self.before, cpu_times())

    def __str__(self) -> str:
        return ("CPU time stolen by the host: unknown" if self.fraction is None else
                f"CPU time stolen by the host: {100 * self.fraction:.1f}%")


def cpu_times() -> list[int] | None:
    """user, nice, system, idle, iowait, irq, softirq, steal: the whole machine's jiffies so far (None off Linux)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(v) for v in fields[1:9]] if fields[0] == "cpu" and len(fields) >= 9 else None


def stolen_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the CPU time between two ``cpu_times()`` that the host stole."""
    if not before or not after:
        return None
    total = sum(after) - sum(before)
    return (after[7] - before[7]) / total if total > 0 else 0.0


def hardware() -> str:
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


# What decides which kernels PyTorch's oneDNN and TensorFlow pick: vector width, bf16 and int8 dot products, AMX.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_flags(wanted: tuple[str, ...] = SPEED_FLAGS) -> str:
    """Which of ``wanted`` the CPU reports (Linux /proc/cpuinfo; "unknown" elsewhere)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(flag for flag in wanted if flag in flags) or "none of " + " ".join(wanted)


def conditions(stolen: "StolenTime | None" = None) -> str:
    """The 1-minute load average now and, given a finished ``StolenTime``, the share the host stole meanwhile."""
    load = f"load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "load average unknown"
    if stolen is None or stolen.fraction is None:
        return load
    return f"{load}, stolen {100 * stolen.fraction:.1f}%"


def _spin() -> None:
    while True:
        pass


@contextmanager
def background_load(processes: int | None = None):
    """The fixed background load of the busy-machine benchmarks: ``processes`` (default: one per CPU) Python
    processes that spin until the block ends; 0 starts none, so a quiet run goes through the same code."""
    count = (os.cpu_count() or 1) if processes is None else processes
    busy = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for process in busy:
        process.start()
    try:
        yield busy
    finally:
        for process in busy:
            process.terminate()
        for process in busy:
            process.join()


def versions(names: tuple[str, ...] = PACKAGES) -> str:
    """Installed versions of ``names`` ('absent' for optional ones that are not), and Python's."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:  # httptools and uvloop are optional for uvicorn
            found.append(f"{name} absent")
    return ", ".join(found) + f", Python {platform.python_version()}"
