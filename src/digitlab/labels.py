"""The names of what a digitlab model can answer: the ten digits, and "not a digit" for a network taught to refuse.

A checkpoint and its ONNX export carry their class list (``metadata["classes"]``), written from here when a model
is trained; every consumer reads the list from the metadata and finds the refusal output by its name, never by a
position it assumes. They also carry how their inputs were normalised (``metadata["normalisation"]``), which
``normalisation_of`` reads and checks for both readers, the checkpoint loader and the Recognizer. Torch-free: both
floors of the package import it.
"""

from __future__ import annotations

import math
from typing import Any

DIGITS = tuple(str(digit) for digit in range(10))
NOT_A_DIGIT = "not a digit"


def class_names(not_a_digit: bool) -> list[str]:
    """The class list of a model with ten outputs, or eleven when it also says "not a digit"."""
    return [*DIGITS, NOT_A_DIGIT] if not_a_digit else list(DIGITS)


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
