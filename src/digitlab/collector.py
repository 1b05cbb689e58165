"""Python's garbage collector kept out of the way of a command's start and exit.

Importing PyTorch makes some hundreds of thousands of objects that live until the process ends. The collector runs
every few hundred new objects and walks the young ones again each time, so while they are being made it keeps
walking objects that will never be garbage; and at exit it walks every living object once more. So a job's big
imports run with the collector paused, and the command's own process freezes what lives at its end out of the last
collections (measured: docs/results.md, 'Time to accuracy').

    with imports_at_once():
        import torch            # no collections while it loads
    ...
    leave_to_the_system()       # last thing before the process exits: nothing left for the collector to walk

Objects made afterwards are collected as always; a collector the caller turned off stays off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_at_once() -> Iterator[None]:
    """Pause the collector for the block (it may import), and let it run again after as it did before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def leave_to_the_system() -> None:
    """Freeze every living object, so the collections Python runs at exit have nothing to walk. Only for a process
    about to end: frozen objects are never collected. Python does not promise finalisers to objects alive at exit,
    and atexit handlers, flushes and files their owners closed are untouched."""
    gc.freeze()
