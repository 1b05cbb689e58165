"""Recognise digits in people's images: the Python API behind ``digitlab predict`` and the web page.

Each image goes through ``preprocess.prepare`` (the one preprocessing path), the digits of many images are stacked
into batches for one model call each, and every answer says how sure it is. Below the confidence threshold, or
when the image holds no clear ink at all, or when the model's own "not a digit" output wins (a network trained with
``TrainConfig.not_a_digit``, as the bundled one is), the digit is ``None`` and ``reason`` says why.

    recognizer = Recognizer(load_engine(), threshold=0.7)
    for result in recognizer.predict(["a.png", "b.jpg"]):
        print(result.source, result.digit, result.confidence)
    recognizer.predict_one("2026.jpg", multi=True).number       # "2026"
    recognizer.predict_one("chalk.jpg", polarity="light-on-dark", threshold=0.9)   # options for one call

Results turn into JSON with ``to_dict()``. An input that cannot be read gives a result with ``error`` set; the
rest of the batch goes on. This module imports no torch (the engine decides what runs the model).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from digitlab.labels import DIGITS, NOT_A_DIGIT, normalisation_of, temperature_of
from digitlab.errors import one_line
from digitlab.recognition.decode import UNREADABLE, ImageError
from digitlab.recognition.engine import Engine, normalise
from digitlab.recognition.facts import MAX_PIXELS, POLARITIES, check_threshold, default_threshold
from digitlab.recognition.preprocess import Prepared, prepare

_log = logging.getLogger(__name__)


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
            "confidence": _rounded(self.confidence),
            "top3": [{"digit": d, "probability": _rounded(p)} for d, p in self.top3],
            "probabilities": [_rounded(p) for p in self.probabilities],
            "not_a_digit": _rounded(self.not_a_digit),
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
    steps: dict | None = field(default=None, repr=False)  # preprocess's images between its steps, when asked for

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
        confidence = _rounded(self.confidence)
        if self.multi:
            return {"path": self.source, "number": self.number, "confidence": confidence,
                    "digits": [d.to_dict() for d in self.digits], "reason": self.reason}
        if not self.digits:
            return {"path": self.source, "digit": None, "confidence": None, "top3": [], "reason": self.reason}
        only = self.digits[0].to_dict()
        return {"path": self.source, **only, "reason": self.reason}


class Recognizer:
    """A model (behind an engine) plus the rules for when its answer counts.

    ``threshold`` and ``polarity`` are the defaults; each call may ask for others. ``threads`` images are decoded
    and preprocessed side by side within a batch (decoding and OpenCV release the GIL). OpenCV's own thread pool is
    a process-wide setting, left to whoever owns the process: a program that recognises images in parallel should
    call ``cv2.setNumThreads(1)`` at its start, as ``digitlab predict`` and ``digitlab serve`` do, since OpenCV
    splitting each small image across threads too only competes with the parallelism across images.

    The model's class list (``metadata["classes"]``) says which output is which digit and which, if any, is
    "not a digit" (``labels.NOT_A_DIGIT``); nothing is assumed from the outputs' order.
    """

    def __init__(self, engine: Engine, threshold: float | None = None, polarity: str = "auto",
                 batch_size: int = 256, threads: int | None = None, max_pixels: int = MAX_PIXELS):
        self.polarity, self.threshold = _checked(polarity, default_threshold(engine.metadata)
                                                 if threshold is None else threshold)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.engine = engine
        self.batch_size = batch_size
        self.max_pixels = max_pixels  # an image with more is refused from its header, before decoding
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.digit_outputs, self.not_a_digit_output = _outputs(engine.metadata.get("classes"))
        self.classes = len(engine.metadata["classes"])
        self.mean, self.std = normalisation_of(engine.metadata)
        # A calibrated model's logits are divided by its fitted temperature (``labels.temperature_of``) ...
        self.temperature = temperature_of(engine.metadata)
        calibration = engine.metadata.get("calibration") or {}
        # ... and its "not a digit" output lowered by the log-odds its calibration chose, so that it refuses at most
        # the share of real digits the project allows, by every writer it can test (``calibrate.refusal_bar``).
        self.not_a_digit_offset = float(calibration.get("not_a_digit_offset", 0.0))
        if not (np.isfinite(self.not_a_digit_offset) and self.not_a_digit_offset >= 0):
            raise ValueError(f"the model's 'not a digit' offset must be 0 or more, not {self.not_a_digit_offset}")

    def predict_one(self, source, multi: bool = False, polarity: str | None = None,
                    threshold: float | None = None, steps: bool = False) -> Prediction:
        return self.predict([source], multi, polarity, threshold, steps)[0]

    def predict(self, inputs: Iterable, multi: bool = False, polarity: str | None = None,
                threshold: float | None = None, steps: bool = False) -> list[Prediction]:
        """Predictions for every input, in order. An item is a path, bytes, a numpy array or a PIL image, or a
        (name, item) pair that names it in the results. ``polarity`` and ``threshold`` (None: the Recognizer's)
        apply to this call only; with ``steps`` each result keeps the preprocessing's images (``steps``)."""
        return list(self.iter_predict(inputs, multi, polarity, threshold, steps))

    def iter_predict(self, inputs: Iterable, multi: bool = False, polarity: str | None = None,
                     threshold: float | None = None, steps: bool = False) -> Iterator[Prediction]:
        """Like ``predict``, but yields results batch by batch: a long folder shows progress, memory stays flat.
        Bad options are refused here, before the first input is read."""
        polarity, threshold = _checked(self.polarity if polarity is None else polarity,
                                       self.threshold if threshold is None else threshold)
        return self._iter_predict(inputs, _Options(multi, polarity, threshold, steps))

    def _iter_predict(self, inputs: Iterable, options: _Options) -> Iterator[Prediction]:
        chunk = []
        for index, item in enumerate(inputs):
            chunk.append(_named(index, item))
            if len(chunk) == self.batch_size:
                yield from self._predict_chunk(chunk, options)
                chunk = []
        if chunk:
            yield from self._predict_chunk(chunk, options)

    def _predict_chunk(self, chunk: list[tuple[str, Any]], options: _Options) -> list[Prediction]:
        if self.threads > 1 and len(chunk) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                prepared = list(pool.map(lambda item: self._prepare(*item, options), chunk))
        else:
            prepared = [self._prepare(name, source, options) for name, source in chunk]
        images = [g.image for p in prepared if isinstance(p, Prepared) for g in p.glyphs]
        probabilities = self.probabilities(np.stack(images)) if images else np.zeros((0, self.classes), np.float32)
        results, used = [], 0
        for (name, _), item in zip(chunk, prepared):
            if isinstance(item, Prediction):  # could not be read
                results.append(item)
                continue
            count = len(item.glyphs)
            results.append(self._answer(name, item, probabilities[used:used + count], options))
            used += count
        return results

    def _prepare(self, name: str, source, options: _Options) -> Prepared | Prediction:
        try:
            return prepare(source, polarity=options.polarity, multi=options.multi, max_pixels=self.max_pixels,
                           steps=options.steps)
        except ImageError as exc:
            return Prediction(name, options.multi, error=str(exc), error_kind=exc.kind)
        except MemoryError:
            return Prediction(name, options.multi, error="out of memory while decoding the image")
        except Exception as exc:  # noqa: BLE001 - a fault in reading one item must not lose the rest of the batch
            _log.exception("reading %s failed", name)  # a bug, not the user's input: the traceback goes to the log
            return Prediction(name, options.multi, error=f"could not read the image ({type(exc).__name__}: "
                              f"{one_line(exc)})", error_kind=UNREADABLE)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) MNIST-form images -> (N, classes) probabilities, in batches of ``batch_size``."""
        batches = [normalise(images[i:i + self.batch_size], self.mean, self.std)
                   for i in range(0, len(images), self.batch_size)]
        logits = np.concatenate([self.engine.logits(b) for b in batches]).astype(np.float64) / self.temperature
        if self.not_a_digit_output is not None:
            logits[:, self.not_a_digit_output] -= self.not_a_digit_offset
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def _answer(self, name: str, prepared: Prepared, probabilities: np.ndarray, options: _Options) -> Prediction:
        multi = options.multi
        digits = [self._digit(glyph.image, glyph.box, p, options.threshold)
                  for glyph, p in zip(prepared.glyphs, probabilities)]
        reason = prepared.reason
        if reason is None:
            unsure = [d for d in digits if d.digit is None]
            if not multi and unsure:
                reason = unsure[0].reason
            elif unsure:
                reason = f"{len(unsure)} of {len(digits)} digits unsure ({unsure[0].reason})"
        return Prediction(name, multi, digits, reason, polarity=prepared.polarity, size=prepared.size,
                          steps=prepared.steps)

    def _digit(self, image: np.ndarray, box, probabilities: np.ndarray, threshold: float) -> DigitResult:
        digits = probabilities[self.digit_outputs]  # (10,), index = digit
        none = None if self.not_a_digit_output is None else float(probabilities[self.not_a_digit_output])
        order = np.argsort(-digits)
        best, confidence = int(order[0]), float(digits[order[0]])
        top3 = [(int(d), float(digits[d])) for d in order[:3]]
        reason = None
        if not np.isfinite(probabilities).all():  # NaN passes no threshold check by failing it: say so instead
            reason = "the model's output is not a number: the model file is broken"
        elif none is not None and none > confidence:
            reason = f"not a digit: {none:.0%} sure it is none of the ten (nearest digit {best} at {confidence:.0%})"
        elif confidence < threshold:
            reason = f"unsure: best guess {best} at {confidence:.0%} is below the threshold of {threshold:.0%}"
        return DigitResult(None if reason else best, confidence, top3, [float(p) for p in digits],
                           tuple(box), reason, image, none)


@dataclass(frozen=True)
class _Options:
    """What one call asked for."""

    multi: bool
    polarity: str
    threshold: float
    steps: bool = False


def _checked(polarity: str, threshold: float) -> tuple[str, float]:
    """``polarity`` and ``threshold`` if they are ones a Recognizer takes, else a ValueError that says why."""
    threshold = check_threshold(threshold)
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, not {polarity!r}")
    return polarity, threshold


def _outputs(classes) -> tuple[list[int], int | None]:
    """The model's output index for each digit 0-9, and for "not a digit" (None when it has no such output), from
    its class list. Older files wrote the digits as ints, newer ones as strings: both are read by ``str(name)``."""
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError("the model's metadata has no class list (metadata['classes']): it cannot say which output "
                         "is which digit")
    names = [str(name) for name in classes]
    missing = [digit for digit in DIGITS if digit not in names]
    if missing:
        raise ValueError(f"the model's class list {names} lacks the digits {', '.join(missing)}")
    return [names.index(digit) for digit in DIGITS], names.index(NOT_A_DIGIT) if NOT_A_DIGIT in names else None


def _rounded(number: float | None) -> float | None:
    """A probability for JSON: six decimals, and None for a missing or non-finite one (JSON has no NaN, and a
    reader that meets one rejects the whole line)."""
    return round(number, 6) if number is not None and np.isfinite(number) else None


def _named(index: int, item) -> tuple[str, Any]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item), item
    kind = "bytes" if isinstance(item, (bytes, bytearray, memoryview)) else type(item).__name__
    return f"<{kind} #{index}>", item
