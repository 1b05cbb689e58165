"""Freed memory kept for the next training step, instead of handed back to the kernel and faulted in again.

glibc's malloc gives a block of a few MB its own mapping and unmaps it when it is freed, and trims the heap whenever
more than a little is free at its top. A training step frees its activations and gradients and allocates the same
sizes again a moment later, so every step faulted thousands of pages back in: for the `fast` recipe's small
network much of each step went to the kernel (docs/results.md, 'Time to accuracy'). Raising both
thresholds keeps those blocks in the heap, to be reused; the process holds on to at most TRIM_THRESHOLD of free
memory it could have returned. PyTorch's own advice for CPU training is a different allocator (jemalloc or tcmalloc,
preloaded); this asks the one every Linux install has, through its documented ``mallopt``.

    keep_freed_memory()   # once, before training; False (and nothing done) where the C library is not glibc

A user's own ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` is kept.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20    # glibc's largest: blocks below it come from the heap, not a mapping of their own
TRIM_THRESHOLD = 256 << 20   # free memory at the heap's top kept before any is handed back
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for this process; whether they were set."""
    if any(name in os.environ for name in USER_SETTINGS) or not _is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or a C library that does not say
        return False
