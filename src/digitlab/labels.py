"""The names of what a digitlab model can answer: the ten digits, and "not a digit" for a network taught to refuse;
and the folders that hold images of each (``CLASS_FOLDERS``).

A checkpoint and its ONNX export carry their class list (``metadata["classes"]``), written from here when a model
is trained; every consumer reads the list from the metadata and finds the refusal output by its name, never by a
position it assumes. They also carry how their inputs were normalised (``metadata["normalisation"]``), which
``normalisation_of`` reads and checks for both readers, the checkpoint loader and the Recognizer; both readers parse
that metadata with ``metadata_from_json``. Torch-free: both floors of the package import it.
"""

from __future__ import annotations

import json
import math
from typing import Any

DIGITS = tuple(str(digit) for digit in range(10))
NOT_A_DIGIT = "not a digit"
# The class-folder layout, DIR/0 ... DIR/9 and DIR/not_a_digit: what training on folders reads (datasets.folders) and
# what the server's --collect writes (serve.samples).
NOT_A_DIGIT_FOLDER = "not_a_digit"
CLASS_FOLDERS = (*DIGITS, NOT_A_DIGIT_FOLDER)

# A model file's metadata is a stranger's text, read before anything else in the file is trusted. Every digitlab
# checkpoint's is a few kilobytes and a few levels deep; these bounds are far above that, and far below what would
# fill memory or exhaust Python's recursion (a 100,000-level array) in json or in any reader after it.
MAX_METADATA_CHARS = 1_000_000
MAX_METADATA_DEPTH = 32


def class_names(not_a_digit: bool) -> list[str]:
    """The class list of a model with ten outputs, or eleven when it also says "not a digit"."""
    return [*DIGITS, NOT_A_DIGIT] if not_a_digit else list(DIGITS)


def check_class_folder(label: str) -> str:
    """``label`` if it names a class folder; ValueError with a one-line reason otherwise."""
    if label not in CLASS_FOLDERS:
        raise ValueError(f"label must be a digit 0-9 or {NOT_A_DIGIT_FOLDER!r}, not {label!r:.40}")
    return label


def normalisation_of(metadata: Any, source: str | None = None) -> tuple[float, float]:
    """The (mean, std) a model's inputs are normalised with, from its metadata; ValueError unless both are finite
    numbers and std is positive (a std of 0 or NaN would turn every input into NaN or infinity, silently).
    ``source`` (a file name) starts the message when given."""
    where = f"{source}: " if source else ""
    norm = metadata.get("normalisation") if isinstance(metadata, dict) else None
    if not norm:  # every digitlab checkpoint and export has it; guessing would silently skew every answer
        raise ValueError(f"{where}metadata 'normalisation' is missing: it does not say how the model's inputs were "
                         f"normalised")
    numbers = [norm.get(key) for key in ("mean", "std")] if isinstance(norm, dict) else [None]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise ValueError(f"{where}metadata 'normalisation' must hold numbers 'mean' and 'std', not {norm!r:.120}")
    mean, std = float(norm["mean"]), float(norm["std"])
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise ValueError(f"{where}metadata 'normalisation' has mean {mean!r} and std {std!r}; both must be finite and "
                         f"std positive")
    return mean, std


def temperature_of(metadata: dict[str, Any]) -> float:
    """The temperature a model's logits are divided by before the softmax (1 when it was never calibrated), so that
    a confidence of 0.9 means about 9 in 10 such answers are right (training/calibrate.py); ValueError unless it is
    a positive, finite number."""
    temperature = float((metadata.get("calibration") or {}).get("temperature", 1.0))
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"the model's calibration temperature must be positive, not {temperature}")
    return temperature


def metadata_from_json(text: str, source: str) -> dict[str, Any]:
    """A model file's metadata (the JSON object it carries), read within ``MAX_METADATA_CHARS`` and
    ``MAX_METADATA_DEPTH``; ValueError naming ``source`` (the file) for anything else, so a broken or hostile file is
    one line, "not a valid model", wherever it is opened."""
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(f"{source}: not a valid model: its metadata is {len(text):,} characters long, over the limit "
                         f"of {MAX_METADATA_CHARS:,}")
    try:
        metadata = json.loads(text)
    except RecursionError:
        raise ValueError(f"{source}: not a valid model: its metadata nests deeper than {MAX_METADATA_DEPTH} "
                         f"levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not a valid model: its metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: not a valid model: its metadata is not a JSON object")
    if _depth(metadata) > MAX_METADATA_DEPTH:
        raise ValueError(f"{source}: not a valid model: its metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    return metadata


def _depth(value: Any) -> int:
    """How many arrays and objects deep ``value`` nests, counted without recursion (the nesting is what is in
    doubt)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level <= MAX_METADATA_DEPTH:  # no need to walk further down than the limit
            stack.extend((child, level + 1) for child in children)
    return deepest
