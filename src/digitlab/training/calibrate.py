"""Confidence that means what it says: a temperature fitted on held-out digits, and the measures that check it.

A network trained with label smoothing never puts much more than 0.9 on any class, however plain the digit, so its
top probability is not the chance of being right. Temperature scaling (Guo et al., 2017) divides the logits by one
number T, fitted to minimise the negative log-likelihood on digits the network never trained on - the validation
split the checkpoint's own config held out - and changes no answer, only how sure each is. T is written into the
checkpoint's metadata (``calibration``), which the ONNX export copies, and the Recognizer applies it.

    digitlab train --validation-split 0.1 --out runs/cal
    digitlab calibrate runs/cal/model.safetensors        # fits T and records it, with the error before and after

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


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the mean negative log-likelihood of softmax(logits / T) (one parameter, convex in
    log T: L-BFGS on log T converges in a few steps)."""
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
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


def temperature_of(meta: dict[str, Any]) -> float:
    """The temperature a checkpoint's logits are divided by (1 when it was never calibrated), as the Recognizer
    reads it."""
    return float((meta.get("calibration") or {}).get("temperature", 1.0))


def digit_confidence(logits: torch.Tensor, classes: list[str], temperature: float = 1.0):
    """(top digit's probability, top digit) per row, as the Recognizer computes them: a softmax over every output
    (digits and "not a digit"), read at the digits."""
    probabilities = F.softmax(logits.double() / temperature, dim=1)
    digits = [classes.index(str(d)) for d in range(10)]
    confidence, best = probabilities[:, digits].max(dim=1)
    return confidence.numpy(), best.numpy()


def calibrate(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Fit the temperature of the checkpoint at ``path`` on its held-out split and record it in its metadata (the
    weights are untouched). Returns the ``calibration`` entry written."""
    model, meta = checkpoint.load(path)
    val = held_out(meta, data_dir)
    with torch.no_grad():
        logits = infer(model, val.images)
    entry = calibration_entry(logits, val.labels, [str(c) for c in meta["classes"]],
                              f"validation split ({len(val)} MNIST training images the model did not train on)")
    checkpoint.update_metadata(path, {"calibration": entry})
    return entry


def calibration_entry(logits: torch.Tensor, digits: torch.Tensor, classes: list[str], fitted_on: str) -> dict:
    """Fit the temperature on held-out ``logits`` of images of the given ``digits`` (0-9) and describe it as a
    checkpoint's ``calibration`` entry: the temperature, what it was fitted on, log loss and ECE before and after."""
    targets = torch.tensor([classes.index(str(int(digit))) for digit in digits])
    temperature = fit_temperature(logits, targets)
    entry = {"temperature": round(temperature, 6), "fitted_on": fitted_on, "count": len(targets)}
    for name, t in (("before", 1.0), ("after", temperature)):
        confidence, best = digit_confidence(logits, classes, t)
        entry[f"nll_{name}"] = round(float(F.cross_entropy(logits.double() / t, targets)), 6)
        entry[f"ece_{name}"] = round(calibration_error(confidence, best == digits.numpy()), 6)
    return entry
