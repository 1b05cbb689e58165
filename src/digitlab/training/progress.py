"""A one-line progress bar per epoch with live loss, accuracy and ETA; plain lines when output is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:d}:{seconds % 60:02d}"


class EpochBar:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, width: int = 24, enabled: bool = True):
        self.label, self.total, self.width, self.enabled = label, total, width, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self.last_print = 0.0
        self.plain_marks = {total * k // 4 for k in (1, 2, 3)}  # quarter-way lines when not a terminal

    def update(self, done: int, **stats: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        text = " ".join(f"{k} {v:.4f}" for k, v in stats.items())
        if self.tty:
            if now - self.last_print < 0.1 and done < self.total:
                return
            filled = self.width * done // self.total
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {text} eta {_clock(eta)}\033[K")
            self.stream.flush()
            self.last_print = now
        elif done in self.plain_marks:
            self.stream.write(f"{self.label} {done}/{self.total} {text} eta {_clock(eta)}\n")
            self.stream.flush()

    def close(self, summary: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        self.stream.write(("\r" if self.tty else "") + f"{self.label} {summary} ({elapsed:.1f}s)"
                          + ("\033[K" if self.tty else "") + "\n")
        self.stream.flush()
