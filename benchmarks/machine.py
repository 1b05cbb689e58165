"""What every benchmark prints beside its numbers: the machine and the package versions it ran with.

    from machine import hardware, versions      # benchmarks run as scripts, so this folder is on sys.path
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

PACKAGES = ("digitlab", "torch", "onnxruntime", "fastapi", "uvicorn", "httptools", "uvloop", "numpy", "pillow",
            "pyspng", "opencv-python-headless")


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def hardware() -> str:
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


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
