"""Recognise digits in people's images: the Python API behind ``digitlab predict`` and the web page.

Each image goes through ``preprocess.prepare`` (the one preprocessing path), the digits of many images are stacked
into batches for one model call each, and every answer says how sure it is. Below the confidence threshold, or
when the image holds no clear ink at all, or when the model's own "not a digit" output wins (a network trained with
``TrainConfig.not_a_digit``, as the bundled one is), the digit is ``None`` and ``reason`` says why.

    recognizer = Recognizer(load_engine(), threshold=0.7)
    for result in recognizer.predict(["a.png", "b.jpg"]):
        print(result.source, result.digit, result.confidence)
    recognizer.predict_one("2026.jpg", multi=True).number       # "2026"

Results turn into JSON with ``to_dict()``. An input that cannot be read gives a result with ``error`` set; the
rest of the batch goes on. This module imports no torch (the engine decides what runs the model).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from digitlab.recognition.engine import Engine
from digitlab.recognition.decode import MAX_PIXELS, ImageError
from digitlab.recognition.preprocess import POLARITIES, Prepared, normalise, prepare

DEFAULT_THRESHOLD = 0.7


@dataclass
class DigitResult:
    """One digit's answer. ``digit`` is None when the model is not sure enough (``reason`` says so)."""

    digit: int | None
    confidence: float                       # probability of the most likely class, whether accepted or not
    top3: list[tuple[int, float]]           # (digit, probability), most likely first
    probabilities: list[float]              # all ten, index = digit
    box: tuple[int, int, int, int]          # x, y, width, height in the upright original image
    reason: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)  # (28, 28) what the model saw
    not_a_digit: float | None = None        # the probability of the model's "not a digit" output, if it has one

    def to_dict(self) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "confidence": round(self.confidence, 6),
            "top3": [{"digit": d, "probability": round(p, 6)} for d, p in self.top3],
            "probabilities": [round(p, 6) for p in self.probabilities],
            "not_a_digit": None if self.not_a_digit is None else round(self.not_a_digit, 6),
            "box": list(self.box),
            "reason": self.reason,
        }


@dataclass
class Prediction:
    """Everything said about one input: one digit, or (``multi``) a number read left to right."""

    source: str
    multi: bool = False
    digits: list[DigitResult] = field(default_factory=list)
    reason: str | None = None               # why there is no answer (blank, noise, unsure)
    error: str | None = None                # the input could not be read at all
    error_kind: str | None = None           # and why: preprocess.ImageError's kind
    polarity: str | None = None
    size: tuple[int, int] | None = None     # width, height of the upright original image

    @property
    def digit(self) -> int | None:
        """The digit of a single-digit prediction (None when unsure, unreadable, or for a multi-digit one)."""
        return self.digits[0].digit if not self.multi and self.digits else None

    @property
    def confidence(self) -> float | None:
        """The best class's probability; for a number, the least sure of its digits."""
        return min(d.confidence for d in self.digits) if self.digits else None

    @property
    def number(self) -> str | None:
        """The digits read left to right as a string, or None if any of them is unsure."""
        if not self.digits or any(d.digit is None for d in self.digits):
            return None
        return "".join(str(d.digit) for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``path``, ``digit`` (or ``number`` and ``digits``), ``confidence``, ``top3``..."""
        if self.error is not None:
            return {"path": self.source, "digit": None, "error": self.error}
        confidence = None if self.confidence is None else round(self.confidence, 6)
        if self.multi:
            return {"path": self.source, "number": self.number, "confidence": confidence,
                    "digits": [d.to_dict() for d in self.digits], "reason": self.reason}
        if not self.digits:
            return {"path": self.source, "digit": None, "confidence": None, "top3": [], "reason": self.reason}
        only = self.digits[0].to_dict()
        return {"path": self.source, **only, "reason": self.reason}


class Recognizer:
    """A model (behind an engine) plus the rules for when its answer counts."""

    def __init__(self, engine: Engine, threshold: float = DEFAULT_THRESHOLD, polarity: str = "auto",
                 batch_size: int = 256, workers: int | None = None, max_pixels: int = MAX_PIXELS):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, not {polarity!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.engine = engine
        self.threshold = threshold
        self.polarity = polarity
        self.batch_size = batch_size
        self.max_pixels = max_pixels  # an image with more is refused from its header, before decoding
        # decoding and OpenCV release the GIL, so threads preprocess images side by side
        self.workers = workers or min(4, os.cpu_count() or 1)
        # The parallelism is across images (these workers, or a server's requests). OpenCV's own pool, splitting
        # each small image across threads too, only competes with them: about 40% more CPU per canvas measured.
        cv2.setNumThreads(1)
        # outputs past the ten digits: a network trained with an 11th class says "not a digit" with it
        self.classes = len(engine.metadata.get("classes", range(10)))
        norm = engine.metadata.get("normalisation")
        if not norm:  # every digitlab checkpoint and export has it; guessing would silently skew every answer
            raise ValueError("the model's metadata does not say how its inputs were normalised")
        self.mean, self.std = float(norm["mean"]), float(norm["std"])

    def predict_one(self, source, multi: bool = False) -> Prediction:
        return self.predict([source], multi)[0]

    def predict(self, inputs: Iterable, multi: bool = False) -> list[Prediction]:
        """Predictions for every input, in order. An item is a path, bytes, a numpy array or a PIL image, or a
        (name, item) pair that names it in the results."""
        return list(self.iter_predict(inputs, multi))

    def iter_predict(self, inputs: Iterable, multi: bool = False) -> Iterator[Prediction]:
        """Like ``predict``, but yields results batch by batch: a long folder shows progress, memory stays flat."""
        chunk = []
        for index, item in enumerate(inputs):
            chunk.append(_named(index, item))
            if len(chunk) == self.batch_size:
                yield from self._predict_chunk(chunk, multi)
                chunk = []
        if chunk:
            yield from self._predict_chunk(chunk, multi)

    def _predict_chunk(self, chunk: list[tuple[str, Any]], multi: bool) -> list[Prediction]:
        if self.workers > 1 and len(chunk) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                prepared = list(pool.map(lambda item: self._prepare(*item, multi), chunk))
        else:
            prepared = [self._prepare(name, source, multi) for name, source in chunk]
        images = [g.image for p in prepared if isinstance(p, Prepared) for g in p.glyphs]
        probabilities = self.probabilities(np.stack(images)) if images else np.zeros((0, self.classes), np.float32)
        results, used = [], 0
        for (name, _), item in zip(chunk, prepared):
            if isinstance(item, Prediction):  # could not be read
                results.append(item)
                continue
            count = len(item.glyphs)
            results.append(self._answer(name, item, probabilities[used:used + count], multi))
            used += count
        return results

    def _prepare(self, name: str, source, multi: bool) -> Prepared | Prediction:
        try:
            return prepare(source, polarity=self.polarity, multi=multi, max_pixels=self.max_pixels)
        except ImageError as exc:
            return Prediction(name, multi, error=str(exc), error_kind=exc.kind)
        except MemoryError:
            return Prediction(name, multi, error="out of memory while decoding the image")

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) MNIST-form images -> (N, classes) probabilities, in batches of ``batch_size``."""
        batches = [normalise(images[i:i + self.batch_size], self.mean, self.std)
                   for i in range(0, len(images), self.batch_size)]
        logits = np.concatenate([self.engine.logits(b) for b in batches]).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def _answer(self, name: str, prepared: Prepared, probabilities: np.ndarray, multi: bool) -> Prediction:
        digits = [self._digit(glyph.image, glyph.box, p) for glyph, p in zip(prepared.glyphs, probabilities)]
        reason = prepared.reason
        if reason is None:
            unsure = [d for d in digits if d.digit is None]
            if not multi and unsure:
                reason = unsure[0].reason
            elif unsure:
                reason = f"{len(unsure)} of {len(digits)} digits unsure ({unsure[0].reason})"
        return Prediction(name, multi, digits, reason, polarity=prepared.polarity, size=prepared.size)

    def _digit(self, image: np.ndarray, box, probabilities: np.ndarray) -> DigitResult:
        digits = probabilities[:10]
        none = float(probabilities[10]) if len(probabilities) > 10 else None
        order = np.argsort(-digits)
        best, confidence = int(order[0]), float(digits[order[0]])
        top3 = [(int(d), float(digits[d])) for d in order[:3]]
        reason = None
        if none is not None and none > confidence:
            reason = f"not a digit: {none:.0%} sure it is none of the ten (nearest digit {best} at {confidence:.0%})"
        elif confidence < self.threshold:
            reason = f"unsure: best guess {best} at {confidence:.0%} is below the threshold of {self.threshold:.0%}"
        return DigitResult(None if reason else best, confidence, top3, [float(p) for p in digits],
                           tuple(box), reason, image, none)


def _named(index: int, item) -> tuple[str, Any]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item), item
    kind = "bytes" if isinstance(item, (bytes, bytearray, memoryview)) else type(item).__name__
    return f"<{kind} #{index}>", item
