"""Writing files so that nothing is ever half-written: a reader, or a crash, sees the old file or the new one; and
the per-user folder where digitlab keeps what it can make again.

Every file digitlab writes for a user (checkpoints, history, figures, exported samples) goes through here. It needs
neither PyTorch nor anything else heavy, so both floors of the package use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """The per-user folder digitlab keeps what it can make again in ($XDG_CACHE_HOME/digitlab, ~/.cache/digitlab):
    downloaded MNIST files and their verified arrays, people's folders in MNIST's form, the other writers' training
    pool."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digitlab"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; give the permissions open() would
        _fsync(tmp)  # the bytes reach the disk before the name does, so a power cut cannot leave an empty file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync(path.parent, folder=True)  # and the rename itself is on disk


def _fsync(path: str | os.PathLike, folder: bool = False) -> None:
    if folder and os.name == "nt":  # Windows cannot open a folder to flush it; NTFS journals the rename
        return
    fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if folder else os.O_RDWR)  # Windows: RDWR
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
