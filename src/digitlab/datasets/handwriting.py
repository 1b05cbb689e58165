"""Real handwriting from other writers, drawn as people hand it in, read by digitlab and by a plain reference.

A renderer written beside the preprocessing finds only what its author thought of, and MNIST's own test digits come
from the same writers and the same scanner as its training set. This module gathers the real handwritten digits
that install offline, each split into two parts, and measures a recogniser on them case by case
(``handwriting_render.CASES``):

    mnist     MNIST's test set from the data directory          choose: 0-4999        report: 5000-9999
    sklearn   scikit-learn's bundled 8x8 digits (other writers, choose: first half    report: second half
              the test part of the UCI optical-digits set)
    chars74k  Chars74K's tablet-written digits (``writers.py``)  choose and report: by writer
    hwd1000   HwD-1000's screen-drawn digits (``writers.py``)    report only: one writer

and real handwritten letters (``writers.LETTER_SOURCES``), which a reader should refuse (``evaluate_letters``).

Choose recipes and settings on ``choose``; report on ``report``; never choose on the part you report.

Beside digitlab's answer, each file is also read by a plain ``reference`` pipeline (grayscale, Otsu threshold, crop
to the ink, fit into 20x20, centre of mass in 28x28) feeding the SAME network, so a table can tell what
preprocessing loses from what the network cannot read.

    recognizer = Recognizer(load_engine())
    rows = evaluate(recognizer, "sklearn", CASES, part="report", count=100, seed=0)
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Callable, Iterable

import cv2
import numpy as np
from PIL import Image

from digitlab.datasets.handwriting_render import CASES, draw

SOURCES = ("mnist", "sklearn", "chars74k", "hwd1000")
REPORT_ONLY = ("hwd1000",)   # one writer, never chosen on: it has no choose part
PARTS = ("choose", "report")
MNIST_CHOOSE = 5000          # MNIST test digits 0-4999 are for choosing, 5000-9999 for reporting

# One read of one file: (the digit given at the default threshold or None when refused, the most likely of the ten
# digits for what preprocessing found or None when it found nothing, the reason for a refusal or None).
Answer = tuple[int | None, int | None, str | None]


def load_source(source: str, part: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The real digits of one part of ``source``: (N, h, w) uint8 bright ink on dark, and (N,) int labels."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of: {', '.join(PARTS)}")
    if source == "mnist":
        from digitlab.datasets.mnist import read_mnist

        images, labels = read_mnist("test", data_dir)
        chosen = slice(0, MNIST_CHOOSE) if part == "choose" else slice(MNIST_CHOOSE, None)
        return images[chosen], labels[chosen]
    if source == "sklearn":
        try:
            from sklearn.datasets import load_digits
        except ModuleNotFoundError:
            raise ModuleNotFoundError("the sklearn source needs scikit-learn: pip install 'digitlab[dev]'",
                                      name="sklearn") from None
        bunch = load_digits()
        half = len(bunch.images) // 2
        chosen = slice(0, half) if part == "choose" else slice(half, None)
        images = np.round(bunch.images[chosen] * (255 / 16)).astype(np.uint8)  # 0-16 counts -> 0-255
        return images, bunch.target[chosen].astype(np.int64)
    if source in SOURCES:
        from digitlab.datasets.writers import load_digits

        return load_digits(source, part)
    raise ValueError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")


# --- the plain reference pipeline ---------------------------------------------------------------------------------

def reference_mnist(data: bytes) -> np.ndarray:
    """A file -> (28, 28) float32 in [0, 1] the way MNIST was made, with nothing clever: grayscale, Otsu threshold,
    the ink is the smaller side of the threshold, specks (under a tenth of the largest piece) dropped, crop to the
    ink, fit into 20x20 keeping the aspect, centre of mass at the centre of 28x28."""
    gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    _, mask = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if mask.mean() > 0.5:
        mask = 1 - mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return np.zeros((28, 28), np.float32)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.isin(labels, 1 + np.nonzero(areas >= areas.max() / 10)[0])
    ys, xs = np.nonzero(keep)
    crop = keep[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    scale = 20 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    digit = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = digit.shape
    mass = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(h)).sum() / mass
    cx = (digit.sum(axis=0) * np.arange(w)).sum() / mass
    top, left = int(np.clip(round(14 - cy), 0, 28 - h)), int(np.clip(round(14 - cx), 0, 28 - w))
    field = np.zeros((28, 28), np.float32)
    field[top:top + h, left:left + w] = digit
    return field


def reference_digits(recognizer, files: list[bytes]) -> np.ndarray:
    """The reference pipeline's answer for each file: the argmax over the ten digits of the recognizer's network."""
    if not files:
        return np.zeros(0, np.int64)
    probabilities = recognizer.probabilities(np.stack([reference_mnist(data) for data in files]))
    return probabilities[:, recognizer.digit_outputs].argmax(axis=1)


# --- reading the files as digitlab does ---------------------------------------------------------------------------

def read_with(recognizer) -> Callable[[list[tuple[str, bytes]]], list[Answer]]:
    """A reader that hands named files to ``recognizer`` (the Python API) at its own threshold."""
    def read(files: list[tuple[str, bytes]]) -> list[Answer]:
        return [answer_of(p.to_dict()) for p in recognizer.predict(files)]
    return read


def answer_of(result: dict) -> Answer:
    """One prediction's JSON (``Prediction.to_dict`` or a line of ``digitlab predict --json``) -> an Answer."""
    top3 = result.get("top3") or []
    forced = top3[0]["digit"] if top3 else None
    reason = result.get("reason") or result.get("error")
    return result.get("digit"), forced, reason


def reason_kind(reason: str) -> str:
    """A refusal's reason without its numbers: "unsure", "blank image", "no clear ink"..."""
    return reason.split(":")[0]


# --- the benchmark ------------------------------------------------------------------------------------------------

def picked(source: str, part: str, count: int, seed: int, data_dir: str | None = None):
    """``count`` digits of the part, drawn at random (the same ones for every case), with their labels."""
    images, labels = load_source(source, part, data_dir)
    order = np.random.default_rng([seed, SOURCES.index(source)]).permutation(len(images))[:count]
    return images[order], labels[order]


def drawn(source: str, case: str, digits: np.ndarray, seed: int) -> list[tuple[str, bytes]]:
    """Each digit drawn as ``case``: (file name, bytes). The generator depends on seed, source and case only, so a
    case draws the same files whichever other cases run with it."""
    rng = np.random.default_rng([seed, SOURCES.index(source), CASES.index(case)])
    files = []
    for index, digit in enumerate(digits):
        data = draw(digit, case, rng)
        suffix = "jpg" if data[:2] == b"\xff\xd8" else "png"
        files.append((f"{source}-{case}-{index:05d}.{suffix}", data))
    return files


def evaluate(recognizer, source: str, cases: Iterable[str] = CASES, part: str = "report", count: int = 100,
             seed: int = 0, data_dir: str | None = None,
             read: Callable[[list[tuple[str, bytes]]], list[Answer]] | None = None,
             keep: Callable[[str, str, list[tuple[str, bytes]]], None] | None = None) -> list[dict]:
    """One row per case of ``source``: images, right %, refused %, right-when-forced %, reference-right %, and
    the refusals counted by kind.

    ``right`` counts answers given at the reader's threshold that are correct; ``forced`` takes the most likely of
    the ten digits for whatever digitlab's preprocessing found (threshold 0; an image it found nothing in counts
    wrong); ``reference`` feeds the reference pipeline's 28x28 to the same network. ``read`` (default: the
    recognizer's own ``predict``) reads named files, e.g. through the CLI; ``keep(source, case, files)`` sees
    every drawn file, e.g. to save it.
    """
    read = read or read_with(recognizer)
    digits, labels = picked(source, part, count, seed, data_dir)
    rows = []
    for case in cases:
        files = drawn(source, case, digits, seed)
        if keep is not None:
            keep(source, case, files)
        answers = read(files)
        given = np.array([-1 if a[0] is None else a[0] for a in answers])
        forced = np.array([-1 if a[1] is None else a[1] for a in answers])
        reference = reference_digits(recognizer, [data for _, data in files])
        refusals = Counter(reason_kind(a[2] or "no reason given") for a in answers if a[0] is None)
        rows.append(row(source, case, labels, given, forced, reference, refusals))
    return rows


def row(source: str, case: str, labels, given, forced, reference, refusals: Counter) -> dict:
    """The figures of one table row from per-image answers (-1: no answer)."""
    images = len(labels)
    share = (lambda hits: 100.0 * float(np.sum(hits)) / images) if images else (lambda hits: 0.0)
    return {"source": source, "case": case, "images": images,
            "right": share(given == labels), "refused": share(given < 0), "forced": share(forced == labels),
            "reference": share(reference == labels), "refusals": dict(refusals.most_common()),
            "answers": {"labels": list(map(int, labels)), "given": list(map(int, given)),
                        "forced": list(map(int, forced)), "reference": list(map(int, reference))}}


def combined(rows: list[dict], case: str = "all cases") -> dict:
    """Several rows pooled into one (the "all cases" row of a source, or of everything)."""
    joined = {key: np.concatenate([r["answers"][key] for r in rows]).astype(int)
              for key in ("labels", "given", "forced", "reference")}
    refusals = sum((Counter(r["refusals"]) for r in rows), Counter())
    sources = sorted({r["source"] for r in rows})
    return row(sources[0] if len(sources) == 1 else "all", case, joined["labels"], joined["given"],
               joined["forced"], joined["reference"], refusals)


# --- letters, which are no digit ------------------------------------------------------------------------------------

def evaluate_letters(recognizer, source: str, cases: Iterable[str] = CASES, part: str = "report", count: int = 100,
                     seed: int = 0, read: Callable[[list[tuple[str, bytes]]], list[Answer]] | None = None) -> list[dict]:
    """Real handwritten letters of ``source`` (``writers.LETTER_SOURCES``) drawn as each case and read: one row per
    case and kind of letter (capital or small, shaped like a digit or not), with the share refused."""
    from digitlab.datasets.writers import LETTER_SOURCES, load_letters

    read = read or read_with(recognizer)
    rows = []
    for shaped in (False, True):
        letters, names = load_letters(source, part, digit_shaped=shaped)
        order = np.random.default_rng([seed, len(SOURCES) + LETTER_SOURCES.index(source), shaped]).permutation(
            len(letters))[:count]
        letters, names = letters[order], names[order]
        for case in cases:
            rng = np.random.default_rng([seed, len(SOURCES) + LETTER_SOURCES.index(source), shaped, CASES.index(case)])
            files = [(f"{source}-{case}-{index:05d}.png", draw(letter, case, rng)) for index, letter in
                     enumerate(letters)]
            refused = np.array([answer[0] is None for answer in read(files)], bool)
            for kind, of_kind in (("capitals", np.char.isupper(names)), ("small", np.char.islower(names))):
                if of_kind.any():
                    rows.append({"source": source, "case": case, "kind": kind, "digit_shaped": shaped,
                                 "images": int(of_kind.sum()), "refused": 100.0 * float(refused[of_kind].mean())})
    return rows
