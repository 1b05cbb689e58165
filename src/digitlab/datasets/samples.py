"""MNIST images as PNG files plus a labels.csv: the tutorials' first step for trying the application.

    export_samples("test", count=100, out_dir="samples")    # samples/test_00000.png ... + samples/labels.csv
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from digitlab.datasets.mnist import read_mnist
from digitlab.files import atomic_write, atomic_write_text


def export_samples(split: str, count: int, out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                   start: int = 0) -> list[Path]:
    """Write images ``start`` .. ``start + count - 1`` of the split as 28x28 PNGs (bright ink on black, as MNIST
    stores them) and ``labels.csv`` (file,label). Returns the PNG paths."""
    images, labels = read_mnist(split, data_dir)
    if count < 1 or start < 0 or start + count > len(labels):
        raise ValueError(f"the {split} split has {len(labels)} images; cannot export {count} from index {start}")
    out_dir = Path(out_dir)
    rows, paths = ["file,label"], []
    for index in range(start, start + count):
        path = out_dir / f"{split}_{index:05d}.png"
        buffer = io.BytesIO()
        Image.fromarray(images[index]).save(buffer, format="PNG")
        atomic_write(path, lambda tmp, data=buffer.getvalue(): Path(tmp).write_bytes(data))
        rows.append(f"{path.name},{int(labels[index])}")
        paths.append(path)
    atomic_write_text(out_dir / "labels.csv", "\n".join(rows) + "\n")
    return paths
