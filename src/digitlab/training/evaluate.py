"""Inference and metrics, kept apart: ``infer`` turns images into logits, ``evaluate`` turns logits into a report.

    logits = infer(model, images)                      # uint8 (N, 28, 28) -> (N, classes)
    report = evaluate(model, images, labels)           # accuracy, per-class precision/recall, confusion, errors
    report = evaluate_folder(model, load_folder("mine/"))   # the same on people's own images, mistakes by file
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.labels import NOT_A_DIGIT
from digitlab.training.data import data_config_of, to_input

# Test-time augmentation: the image itself and its 1-pixel translations. Never flips: they change digits.
TTA_SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))
# Images per forward pass: on a CPU, batches that fit the caches beat fewer, larger calls
# (measured: docs/results.md, 'Scoring the test set').
BATCH = 256


@torch.inference_mode()
def infer(model: nn.Module, images: torch.Tensor, batch_size: int = BATCH,
          shifts: tuple[tuple[int, int], ...] = ((0, 0),)) -> torch.Tensor:
    """Logits (N, classes) for uint8 images (N, 28, 28), in batches, on the model's device.

    The images are normalised as the model's data configuration says. ``shifts`` lists (dy, dx) pixel translations
    for test-time augmentation; the softmax outputs of the shifted copies are averaged (returned as
    log-probabilities so argmax and losses still work). Never flips.
    """
    data = data_config_of(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size], data, device)  # (B, 1, 28, 28)
        if shifts == ((0, 0),):
            outputs.append(model(x).float().cpu())
            continue
        probs = sum(F.softmax(model(torch.roll(x, s, dims=(2, 3))).float(), dim=1) for s in shifts)
        outputs.append(torch.log(probs / len(shifts)).cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, len(data.classes))


def report(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall, confusion matrix (rows: true, columns: predicted), errors.

    A network with an 11th "not a digit" output is scored strictly: a digit it calls "not a digit" is an error
    (counted apart as ``refused``), since the recogniser would give no answer for it.
    """
    predicted = logits.argmax(dim=1)
    confusion = torch.zeros(10, logits.shape[1], dtype=torch.int64)  # (true digit, predicted class)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    true_positive = confusion.diag().double()
    precision = true_positive / confusion[:, :10].sum(dim=0).clamp(min=1)
    recall = true_positive / confusion.sum(dim=1).clamp(min=1)
    wrong = (predicted != labels).nonzero().flatten()
    return {
        "count": len(labels),
        "accuracy": (predicted == labels).double().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "precision": [round(v, 6) for v in precision.tolist()],
        "recall": [round(v, 6) for v in recall.tolist()],
        "confusion": confusion.tolist(),
        "refused": int((predicted >= 10).sum()),
        "misclassified": wrong.tolist(),
    }


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = BATCH,
             shifts: tuple[tuple[int, int], ...] = ((0, 0),)) -> dict[str, Any]:
    return report(infer(model, images, batch_size, shifts), labels)


def evaluate_folder(model: nn.Module, data, shifts: tuple[tuple[int, int], ...] = ((0, 0),),
                    temperature: float = 1.0) -> dict[str, Any]:
    """``report`` on a labelled folder (``folders.LabelledImages``), its mistakes named by file.

    The digits are scored as the test set is; images labelled "not a digit" are counted apart (how many the model
    refused), and those whose label the model has no output for are returned under ``dropped`` (``folders.Skipped``).
    ``temperature`` (the checkpoint's calibration) makes each mistake's confidence the one `predict` would show.
    """
    from digitlab.datasets.folders import for_model

    classes = list(data_config_of(model).classes)
    images, targets, paths, dropped = for_model(data, classes)
    refusal = classes.index(NOT_A_DIGIT) if NOT_A_DIGIT in classes else None
    digit_rows = np.nonzero(targets != (-1 if refusal is None else refusal))[0]
    if not len(digit_rows):
        raise ValueError(f"{data.root}: no labelled digit to score ({len(data)} usable images, "
                         f"{len(data.skipped) + len(dropped)} skipped)")
    logits = infer(model, torch.from_numpy(images), shifts=shifts)
    probabilities = F.softmax(logits.double() / temperature, dim=1)
    labels = torch.from_numpy(targets)
    result = report(logits[digit_rows], labels[digit_rows])

    def mistake(row: int) -> dict[str, Any]:
        read = int(probabilities[row].argmax())
        return {"path": paths[row], "label": classes[targets[row]], "read": classes[read],
                "confidence": round(float(probabilities[row, read]), 6)}

    result["mistakes"] = [mistake(int(digit_rows[i])) for i in result["misclassified"]]
    result["misclassified"] = [m["path"] for m in result["mistakes"]]
    if refusal is not None and (targets == refusal).any():
        rows = np.nonzero(targets == refusal)[0]
        wrong = [int(r) for r in rows if int(probabilities[r].argmax()) != refusal]
        result["not_a_digit"] = {"images": len(rows), "refused": len(rows) - len(wrong),
                                 "mistakes": [mistake(r) for r in wrong]}
    result["data"] = data.summary()
    result["dropped"] = dropped
    return result


def headline(result: dict[str, Any], shifts: tuple[tuple[int, int], ...] = ((0, 0),)) -> dict[str, Any]:
    """The few numbers worth recording with a checkpoint (``digitlab eval --record``)."""
    return {"accuracy": result["accuracy"], "loss": round(result["loss"], 6),
            "errors": len(result["misclassified"]), "refused": result["refused"], "count": result["count"],
            "shifts": [list(s) for s in shifts]}


def format_report(result: dict[str, Any], what: str = "test images") -> str:
    """The human table: accuracy, per-class precision/recall, the confusion matrix, then the mistakes (by file when
    ``result`` names them, else by index)."""
    lines = [f"{what}: {result['count']}   accuracy: {100 * result['accuracy']:.2f}%   "
             f"loss: {result['loss']:.4f}   errors: {len(result['misclassified'])}"
             + (f" (of which called 'not a digit': {result['refused']})" if result.get("refused") else ""), "",
             "digit  images  precision  recall"]
    for digit in range(10):
        count = sum(result["confusion"][digit])
        called = sum(row[digit] for row in result["confusion"])
        precision = f"{100 * result['precision'][digit]:8.2f}%" if called else f"{'-':>9}"
        recall = f"{100 * result['recall'][digit]:6.2f}%" if count else f"{'-':>7}"
        lines.append(f"{digit:>5}  {count:>6}  {precision}  {recall}")
    lines += ["", "confusion (rows: true digit, columns: predicted)",
              "      " + "".join(f"{d:>6}" for d in range(10)) + ("  none" if len(result["confusion"][0]) > 10 else "")]
    for digit, row in enumerate(result["confusion"]):
        lines.append(f"{digit:>6}" + "".join(f"{v:>6}" for v in row))
    if "mistakes" in result:
        return "\n".join(lines + _mistake_lines(result))
    shown = result["misclassified"][:20]
    more = len(result["misclassified"]) - len(shown)
    lines += ["", "misclassified indices: " + ", ".join(map(str, shown)) + (f" ... (+{more})" if more > 0 else "")]
    return "\n".join(lines)


def _mistake_lines(result: dict[str, Any], limit: int = 20) -> list[str]:
    """Each wrongly read file of an ``evaluate_folder`` report, and how the "not a digit" images fared."""
    lines = ["", f"mistakes: {len(result['mistakes'])}" + (" (first {limit}; --json lists all)".format(limit=limit)
                                                          if len(result["mistakes"]) > limit else "")]
    lines += [f"  {m['path']}: a {m['label']} read as {m['read']} ({m['confidence']:.0%})"
              for m in result["mistakes"][:limit]]
    other = result.get("not_a_digit")
    if other:
        lines += ["", f"not a digit: {other['refused']} of {other['images']} images refused"]
        lines += [f"  {m['path']}: read as {m['read']} ({m['confidence']:.0%})" for m in other["mistakes"][:limit]]
    return lines
