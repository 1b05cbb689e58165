"""Teaching the page: a drawing the model read wrong, saved with the right label into a folder that fine-tuning
reads (``digitlab serve --collect DIR``).

    save_sample(Path("mine"), "3", png_bytes, answer="8", model="digitnet")
    # -> mine/3/20261202T204512Z-9f1c2ab4.png and, beside it, .json: {"label", "time", "model", "answer", ...}

The layout is the class-folder one (``labels.CLASS_FOLDERS``: ``DIR/0 ... DIR/9``, ``DIR/not_a_digit``). The image is
decoded under the same pixel limit as a prediction and written as an 8-bit gray PNG: what is kept is pixels, never
the uploaded bytes. The sidecar is written first and the PNG second, each atomically, under a fresh name: a reader
that sees the PNG finds its sidecar, and nothing already in the folder is ever replaced. Torch-free and FastAPI-free;
it runs where images are read (``serve.runner``), not in the server's HTTP process.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from digitlab.files import atomic_write, atomic_write_text
from digitlab.labels import check_class_folder
from digitlab.recognition.decode import decode, to_gray
from digitlab.recognition.facts import MAX_PIXELS

WHOLE = 1 << 30  # decode at full size: a JPEG is not to be cut down to the working size for keeping


def save_sample(folder: Path, label: str, data: bytes, answer: str | None, model: dict[str, Any],
                max_pixels: int = MAX_PIXELS, source: str | None = None) -> Path:
    """Save the image in ``data`` as ``folder/label/NAME.png`` with its sidecar ``NAME.json``; return the PNG's path.

    ``answer`` is what the model said (None: no answer), ``model`` names the model that said it. An image that
    cannot be read raises ``decode.ImageError`` (its ``kind`` says which HTTP status), a bad label ValueError;
    nothing is written then.
    """
    check_class_folder(label)
    gray = to_gray(decode(data, max_pixels, WHOLE)[0])  # (H, W) in [0, 1]; transparency on its background
    ok, png = cv2.imencode(".png", (np.clip(gray, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))
    assert ok, "OpenCV failed to encode a uint8 gray image"
    now = datetime.now(timezone.utc)
    target = Path(folder) / label
    target.mkdir(parents=True, exist_ok=True)
    while True:  # a fresh name: two people correcting in the same second do not meet
        name = f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"
        if not (target / f"{name}.png").exists() and not (target / f"{name}.json").exists():
            break
    sidecar = {"label": label, "time": now.isoformat(timespec="seconds"), "model": model, "answer": answer,
               "source": source, "size": [int(gray.shape[1]), int(gray.shape[0])]}
    atomic_write_text(target / f"{name}.json", json.dumps(sidecar, indent=2) + "\n")
    atomic_write(target / f"{name}.png", lambda tmp: Path(tmp).write_bytes(png.tobytes()))
    return target / f"{name}.png"
