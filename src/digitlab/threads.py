"""CPU threads that share a busy machine: waiting threads sleep, and no more threads than this process may use.

PyTorch's CPU build runs its parallel regions on OpenMP (GNU libgomp), whose threads by default spin while they wait
for each other (for about 3 ms). When another process holds one of the cores, each step then waits for a thread that
is not running, and training slows several times over. Told to sleep at once instead (``OMP_WAIT_POLICY=PASSIVE``),
a large network loses nothing on a quiet machine, but a small one does: its many short parallel regions each wait for
sleeping threads to wake, a third more time for the `fast` recipe. So waiting threads spin a little first
(``GOMP_SPINCOUNT``, SPIN_ROUNDS, about 10 microseconds), enough to bridge those short gaps, and then sleep (measured:
docs/results.md, 'Training on a busy machine'). libgomp reads the settings once, when PyTorch loads it, so every
entry point calls ``yield_when_waiting`` before anything imports torch; a policy the user set is kept, and with it
libgomp's own spin, as is a spin count the user set.

    from digitlab.threads import yield_when_waiting, available_cpus
    yield_when_waiting()            # first thing in main(), before torch is imported
    threads = available_cpus()      # CPUs this process may run on, under its affinity and cgroup quota
"""

from __future__ import annotations

import math
import os
from pathlib import Path

WAIT_POLICY = "OMP_WAIT_POLICY"
SPIN_COUNT = "GOMP_SPINCOUNT"
SPIN_ROUNDS = 1000  # libgomp counts about 100,000 a millisecond
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def yield_when_waiting(environ: dict | None = None) -> None:
    """Ask OpenMP's waiting threads to spin briefly and then sleep, unless the environment names a policy already."""
    environ = os.environ if environ is None else environ
    if WAIT_POLICY in environ:
        return
    environ[WAIT_POLICY] = "PASSIVE"
    environ.setdefault(SPIN_COUNT, str(SPIN_ROUNDS))


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a container's share),
    rather than the host's count."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)
