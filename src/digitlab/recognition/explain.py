"""See what the model saw: the tutorials' three-panel figure for one prediction.

Left the original picture (with a box around each digit read), in the middle the 28x28 image(s) the model
received, on the right its probabilities - bars for one digit, a digits x classes table for a number.

    write_explanation(prediction, original, "explain.png")
"""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from digitlab.files import atomic_write
from digitlab.recognition.predict import Prediction


def check_destination(path: str | os.PathLike) -> None:
    """ValueError unless ``path``'s folder exists: a figure goes where the user said, and a mistyped folder is
    named, not made."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise ValueError(f"{path}: the folder {folder} does not exist (make it first, or name another)")


def write_explanation(prediction: Prediction, original: Image.Image, path: str | os.PathLike) -> None:
    """Draw the panel for ``prediction`` of ``original`` and write it to ``path`` as PNG, atomically, into a folder
    that exists (``check_destination``)."""
    check_destination(path)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    figure = Figure(figsize=(11, 3.6), layout="constrained")
    picture, seen, bars = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1, 1.2]})

    width, height = prediction.size or original.size  # boxes are in the original's pixels, whatever was decoded
    picture.imshow(np.asarray(original.convert("RGB")), extent=(0, width, height, 0))
    for number, digit in enumerate(prediction.digits):
        x, y, box_width, box_height = digit.box
        picture.add_patch(Rectangle((x, y), box_width, box_height, fill=False, edgecolor="tab:orange", linewidth=1.5))
        if prediction.multi:
            picture.text(x, y, str(number + 1), color="tab:orange", va="bottom", fontsize=9)
    picture.set_title(f"{os.path.basename(prediction.source)}  ({prediction.polarity})", fontsize=10)
    picture.axis("off")

    if prediction.digits:
        strip = np.hstack([np.pad(d.image, ((0, 0), (0, 2)), constant_values=0.5) for d in prediction.digits])
        seen.imshow(strip[:, :-2], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    seen.set_title("what the model saw (28x28)", fontsize=10)
    seen.axis("off")

    if len(prediction.digits) == 1:
        digit = prediction.digits[0]
        colours = ["tab:blue" if d == digit.digit else "lightgray" for d in range(10)]
        bars.bar(range(10), digit.probabilities, color=colours)
        ticks, names = list(range(10)), [str(d) for d in range(10)]
        if digit.not_a_digit is not None:  # the model's own "none of the ten", set a little apart
            refused = digit.not_a_digit > digit.confidence
            bars.bar([10.5], [digit.not_a_digit], color="tab:red" if refused else "mistyrose")
            ticks, names = ticks + [10.5], names + ["none"]
        bars.set_xticks(ticks, names)
        bars.set_ylim(0, 1)
        bars.set_ylabel("probability")
    elif prediction.digits:
        table = np.array([d.probabilities for d in prediction.digits])  # (digits, 10)
        bars.imshow(table, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        bars.set_xticks(range(10))
        bars.set_yticks(range(len(table)), [str(i + 1) for i in range(len(table))])
        bars.set_xlabel("class")
        bars.set_ylabel("digit")
    bars.set_title(_headline(prediction), fontsize=10)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def _headline(prediction: Prediction) -> str:
    if prediction.multi and prediction.number is not None:
        return f"number {prediction.number} (least sure digit {prediction.confidence:.0%})"
    if not prediction.multi and prediction.digit is not None:
        return f"digit {prediction.digit} ({prediction.confidence:.0%})"
    return textwrap.fill(prediction.reason or "no answer", 60)  # wrapped, never cut: the end says the number
