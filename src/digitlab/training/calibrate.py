"""Confidence that means what it says: a temperature fitted on held-out digits, and the measures that check it.

A network trained with label smoothing never puts much more than 0.9 on any class, however plain the digit, so its
top probability is not the chance of being right. Temperature scaling (Guo et al., 2017) divides the logits by one
number T, fitted to minimise the negative log-likelihood on digits the network never trained on - the validation
split the checkpoint's own config held out - and changes no answer, only how sure each is. T is written into the
checkpoint's metadata (``calibration``), which the ONNX export copies, and the Recognizer applies it.

    digitlab train --validation-split 0.1 --out runs/cal
    digitlab calibrate runs/cal/model.safetensors        # fits T and records it, with the error before and after
    digitlab calibrate runs/cal/model.safetensors --other-writers sklearn

A temperature fitted on MNIST's own writers is too sharp for other writers' digits: the network is surer of them
than it is right. ``--other-writers`` fits it on the validation split together with real digits by other writers
(the ``choose`` part of a source in ``datasets/handwriting.py``, never the part the benchmarks report), drawn in
every case a person hands digits in (``handwriting_render.CASES``) and read by the same preprocessing as a user's
file; each of the two sets weighs as much in the fit as the ``other_weight`` share says, whatever its size.
docs/handwriting.md, "Confidence", has the measurements behind the defaults.

The expected calibration error (ECE) is the gap between confidence and accuracy, averaged over equal-width bins of
confidence weighted by how many answers fall in each; ``reliability`` gives the bins for a diagram.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from digitlab.training import checkpoint
from digitlab.training.config import TrainConfig
from digitlab.training.evaluate import infer
from digitlab.training.loop import split_training_set

BINS = 15
REFUSED_AT_MOST = 0.008   # of the real digits of each source's choose part: under the 1 % allowed on every source,
                          # as the part reported on is other digits by other writers
BAR_OFFSETS = tuple(0.25 * i for i in range(25))     # log-odds taken off "not a digit": 0 to 6
BAR_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
BAR_COUNT = 100           # digits (and letters) of each choose part, each drawn in every case
OTHER_COUNT = 300    # digits of the other writers' choose part, each drawn in every case
OTHER_SEED = 1       # the benchmarks choose their settings on seed 0's drawings: the fit draws others
OTHER_WEIGHT = 0.5   # the other writers' share of the fit; the validation split has the rest


def held_out(meta: dict[str, Any], data_dir: str | os.PathLike | None = None):
    """The validation split a checkpoint's training held out, rebuilt from its recorded config (same seed, same
    fraction, same limit). A model trained on every training image has none: calibrating it on the test set would
    use the test set to choose, so that is refused."""
    config = meta.get("config") or {}
    fraction = float(config.get("validation_split") or 0.0)
    if fraction <= 0:
        raise ValueError("this model was trained on all of MNIST's training images, so none are left to calibrate "
                         "on: train it with --validation-split (e.g. 0.1) and calibrate that checkpoint")
    cfg = TrainConfig.from_dict(config)
    return split_training_set(cfg if data_dir is None else replace(cfg, data_dir=str(data_dir)))[1]


def drawn_choose(source: str, count: int = OTHER_COUNT, seed: int = OTHER_SEED,
                 data_dir: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``count`` digits of the ``choose`` part of ``source``, each drawn in every case and read by the
    preprocessing a user's file goes through: (N, 28, 28) float images on the 0-255 scale ``infer`` takes, (N,)
    digits, and how many drawings the preprocessing found no digit in (they are left out: they get no confidence)."""
    from digitlab.datasets.handwriting import drawn, picked
    from digitlab.datasets.handwriting_render import CASES
    from digitlab.recognition.preprocess import prepare

    digits, labels = picked(source, "choose", count, seed, None if data_dir is None else str(data_dir))
    images, kept, missed = [], [], 0
    for case in CASES:
        for (_, data), label in zip(drawn(source, case, digits, seed), labels):
            glyphs = prepare(data).glyphs
            if not glyphs:
                missed += 1
                continue
            images.append(glyphs[0].image * 255.0)
            kept.append(int(label))
    if not images:
        raise ValueError(f"the preprocessing found no digit in any of the {missed} drawings of {source}'s digits")
    return torch.from_numpy(np.stack(images)), torch.tensor(kept), missed


def drawn_letters(source: str, count: int = BAR_COUNT, seed: int = OTHER_SEED) -> tuple[torch.Tensor, int]:
    """``count`` real letters (not shaped like digits) of the ``choose`` part of ``source``
    (``datasets/writers.py``), each drawn in every case and read as a user's file: (N, 28, 28) on the 0-255 scale,
    and how many drawings the preprocessing found nothing in (already refused, whatever the network says)."""
    from digitlab.datasets.handwriting_render import CASES, draw
    from digitlab.datasets.writers import load_letters
    from digitlab.recognition.preprocess import prepare

    letters, _ = load_letters(source, "choose")
    letters = letters[np.random.default_rng([seed, len(letters)]).permutation(len(letters))[:count]]
    images, missed = [], 0
    for index, case in enumerate(CASES):
        rng = np.random.default_rng([seed, index])
        for letter in letters:
            glyphs = prepare(draw(letter, case, rng)).glyphs
            if glyphs:
                images.append(glyphs[0].image * 255.0)
            else:
                missed += 1
    return torch.from_numpy(np.stack(images)), missed


def refused_share(probabilities: np.ndarray, not_a_digit: int, offset: float, threshold: float) -> float:
    """The share of rows a Recognizer refuses when "not a digit" is lowered by ``offset`` log-odds: that output
    outweighs the best digit, or the best digit is below ``threshold``."""
    none = probabilities[:, not_a_digit] * np.exp(-offset)
    digits = np.delete(probabilities, not_a_digit, axis=1)
    total = digits.sum(axis=1) + none
    best = digits.max(axis=1)
    return float(np.mean((none > best) | (best / total < threshold)))


def refusal_bar(model, meta: dict[str, Any], temperature: float, count: int = BAR_COUNT, seed: int = OTHER_SEED,
                data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The "not a digit" offset and the confidence threshold a Recognizer reads this model with: of every pair that
    refuses at most ``REFUSED_AT_MOST`` of the real digits of each source's choose part (drawn in every case), the
    one that refuses the most real letters (their choose part, capitals and small letters weighing alike). Real
    digits win: letters are refused only as far as that allows."""
    from digitlab.labels import NOT_A_DIGIT
    from digitlab.datasets.handwriting import REPORT_ONLY, SOURCES

    not_a_digit = [str(c) for c in meta["classes"]].index(NOT_A_DIGIT)

    def probabilities(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(infer(model, images).double() / temperature, dim=1).numpy()

    digit_sets = {}
    for source in (s for s in SOURCES if s not in REPORT_ONLY):
        images, _, missed = drawn_choose(source, count, seed, data_dir)
        digit_sets[source] = (probabilities(images), missed)
    letter_sets = {}
    for source in ("femnist", "chars74k-letters"):
        images, missed = drawn_letters(source, count, seed)
        letter_sets[source] = (probabilities(images), missed)

    def share(found: tuple[np.ndarray, int], offset: float, threshold: float) -> float:
        rows, missed = found
        return (refused_share(rows, not_a_digit, offset, threshold) * len(rows) + missed) / (len(rows) + missed)

    best = None
    for offset in BAR_OFFSETS:
        for threshold in BAR_THRESHOLDS:
            digits = {s: share(found, offset, threshold) for s, found in digit_sets.items()}
            if max(digits.values()) > REFUSED_AT_MOST:
                continue
            letters = {s: share(found, offset, threshold) for s, found in letter_sets.items()}
            score = float(np.mean(list(letters.values())))
            if best is None or score > best["letters_refused_mean"]:
                best = {"not_a_digit_offset": offset, "threshold": threshold, "letters_refused_mean": score,
                        "digits_refused": digits, "letters_refused": letters}
    if best is None:
        raise ValueError(f"no offset and threshold refuse at most {REFUSED_AT_MOST:.1%} of every source's digits")
    best["chosen_on"] = (f"choose parts: {count} digits of {', '.join(digit_sets)} and {count} letters of "
                         f"{', '.join(letter_sets)} (not shaped like digits), each drawn in every case, seed {seed}; "
                         f"at most {REFUSED_AT_MOST:.1%} of each source's digits refused")
    return best


def check_other_writers(source: str, count: int, weight: float = OTHER_WEIGHT) -> None:
    """Refuse, before any work, an other-writer set that cannot be drawn: MNIST (its writers are the validation
    split already), an unknown source, no digits, or a share of the fit that leaves one of the two sets nothing."""
    from digitlab.datasets.handwriting import REPORT_ONLY, SOURCES

    others = [name for name in SOURCES if name != "mnist" and name not in REPORT_ONLY]
    if source not in others:
        raise ValueError(f"--other-writers {source}: choose one of: {', '.join(others)} (MNIST's writers are the "
                         "validation split already)")
    if count < 1:
        raise ValueError(f"--other-count must be at least 1, not {count}")
    if not 0 < weight < 1:
        raise ValueError(f"--other-weight is the other writers' share of the fit, between 0 and 1, not {weight}")


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """The T > 0 that minimises the mean negative log-likelihood of softmax(logits / T), each row counted by its
    ``weights`` when given (one parameter, convex in log T: L-BFGS on log T converges in a few steps)."""
    logits = logits.detach().double()
    weights = None if weights is None else (weights.double() / weights.double().sum())
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        losses = F.cross_entropy(logits / log_t.exp(), labels, reduction="none")
        loss = losses.mean() if weights is None else (losses * weights).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over confidence bins of (share of answers) x |accuracy - mean confidence|."""
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in
                     reliability(confidence, correct, bins)) / max(len(confidence), 1))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """The answers in equal-width bins of confidence: each bin's range, count, mean confidence and accuracy."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(inside.sum()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> list[dict[str, float]]:
    """For every threshold worth naming (each distinct confidence), the share of answers given (coverage) and the
    share of those that are wrong (risk): the curve a default threshold is read from."""
    order = np.argsort(-np.asarray(confidence, np.float64), kind="stable")
    confidence, correct = np.asarray(confidence)[order], np.asarray(correct, bool)[order]
    answered = np.arange(1, len(order) + 1)
    wrong = np.cumsum(~correct)
    last = np.r_[confidence[1:] != confidence[:-1], True]  # one point per distinct threshold
    return [{"threshold": float(t), "coverage": float(n / len(order)), "risk": float(w / n)}
            for t, n, w in zip(confidence[last], answered[last], wrong[last])]


def digit_confidence(logits: torch.Tensor, classes: list[str], temperature: float = 1.0):
    """(top digit's probability, top digit) per row, as the Recognizer computes them: a softmax over every output
    (digits and "not a digit"), read at the digits."""
    probabilities = F.softmax(logits.double() / temperature, dim=1)
    digits = [classes.index(str(d)) for d in range(10)]
    confidence, best = probabilities[:, digits].max(dim=1)
    return confidence.numpy(), best.numpy()


def calibrate(path: str | os.PathLike, data_dir: str | os.PathLike | None = None, other_writers: str | None = None,
              other_count: int = OTHER_COUNT, other_weight: float = OTHER_WEIGHT,
              other_seed: int = OTHER_SEED, bar: bool = False) -> dict[str, Any]:
    """Fit the temperature of the checkpoint at ``path`` on its held-out split - and, when ``other_writers`` names a
    source, on that source's ``choose`` part drawn in every case, weighing ``other_weight`` of the fit - and record it
    in its metadata (the weights are untouched). With ``bar`` (a model with a "not a digit" output, and the real
    handwriting configured), also choose the offset and threshold it is read with (``refusal_bar``). Returns the
    ``calibration`` entry written."""
    if other_writers is not None:
        check_other_writers(other_writers, other_count, other_weight)
    model, meta = checkpoint.load(path)
    val = held_out(meta, data_dir)
    fitted_on = f"validation split ({len(val)} MNIST training images the model did not train on)"
    with torch.no_grad():
        logits = infer(model, val.images)
    digits, weights, parts, other = val.labels, None, None, None
    if other_writers is not None:
        images, other_digits, missed = drawn_choose(other_writers, other_count, other_seed, data_dir)
        with torch.no_grad():
            other_logits = infer(model, images)
        from digitlab.datasets.handwriting_render import CASES

        drawings = len(other_digits) + missed  # fewer digits than asked for when the part has fewer
        other = {"source": other_writers, "part": "choose", "digits": drawings // len(CASES), "seed": other_seed,
                 "cases": list(CASES), "drawn": drawings, "nothing_found": missed, "weight": other_weight}
        fitted_on += (f" and {len(other_digits)} drawings of {other_writers} digits by other writers (choose part, "
                      f"{other['digits']} digits in {len(CASES)} cases, seed {other_seed}), weighing "
                      f"{other_weight:.0%} of the fit")
        count = len(digits)
        weights = torch.cat([torch.full((count,), (1 - other_weight) / count, dtype=torch.float64),
                             torch.full((len(other_digits),), other_weight / len(other_digits), dtype=torch.float64)])
        parts = {"validation split": torch.arange(count + len(other_digits)) < count}
        parts[f"{other_writers} drawn"] = ~parts["validation split"]
        logits, digits = torch.cat([logits, other_logits]), torch.cat([digits, other_digits])
    entry = calibration_entry(logits, digits, [str(c) for c in meta["classes"]], fitted_on, weights, parts)
    if other is not None:
        entry["other_writers"] = other
    if bar:
        chosen = refusal_bar(model, meta, entry["temperature"], data_dir=data_dir)
        entry |= {"not_a_digit_offset": chosen.pop("not_a_digit_offset"), "threshold": chosen.pop("threshold"),
                  "refusal_bar": chosen}
    checkpoint.update_metadata(path, {"calibration": entry})
    return entry


def calibration_entry(logits: torch.Tensor, digits: torch.Tensor, classes: list[str], fitted_on: str,
                      weights: torch.Tensor | None = None, parts: dict[str, torch.Tensor] | None = None) -> dict:
    """Fit the temperature on held-out ``logits`` of images of the given ``digits`` (0-9), each row counted by its
    ``weights`` when given, and describe it as a checkpoint's ``calibration`` entry: the temperature, what it was
    fitted on, log loss (weighted as fitted) and ECE before and after, and the same per named part (a mask of the
    rows) when ``parts`` are given."""
    targets = torch.tensor([classes.index(str(int(digit))) for digit in digits])
    temperature = fit_temperature(logits, targets, weights)
    share = torch.full((len(targets),), 1 / len(targets), dtype=torch.float64) if weights is None else (
        weights.double() / weights.double().sum())
    entry: dict[str, Any] = {"temperature": round(temperature, 6), "fitted_on": fitted_on, "count": len(targets)}
    scores = {}
    for name, t in (("before", 1.0), ("after", temperature)):
        confidence, best = digit_confidence(logits, classes, t)
        right = best == digits.numpy()
        losses = F.cross_entropy(logits.double() / t, targets, reduction="none")
        entry[f"nll_{name}"] = round(float((losses * share).sum()), 6)
        entry[f"ece_{name}"] = round(calibration_error(confidence, right), 6)
        for part, mask in (parts or {}).items():
            rows = mask.numpy()
            scores.setdefault(part, {"name": part, "count": int(rows.sum()), "weight": round(float(share[mask].sum()),
                                                                                              6)})
            scores[part][f"ece_{name}"] = round(calibration_error(confidence[rows], right[rows]), 6)
    if scores:
        entry["parts"] = list(scores.values())
    return entry
