"""The names of what a digitlab model can answer: the ten digits, and "not a digit" for a network taught to refuse.

A checkpoint and its ONNX export carry their class list (``metadata["classes"]``), written from here when a model
is trained; every consumer reads the list from the metadata and finds the refusal output by its name, never by a
position it assumes. Torch-free: both floors of the package import it.
"""

from __future__ import annotations

DIGITS = tuple(str(digit) for digit in range(10))
NOT_A_DIGIT = "not a digit"


def class_names(not_a_digit: bool) -> list[str]:
    """The class list of a model with ten outputs, or eleven when it also says "not a digit"."""
    return [*DIGITS, NOT_A_DIGIT] if not_a_digit else list(DIGITS)
