"""Inference and metrics, kept apart: ``infer`` turns images into logits, ``evaluate`` turns logits into a report.

    logits = infer(model, images)                      # uint8 (N, 28, 28) -> (N, classes)
    report = evaluate(model, images, labels)           # accuracy, per-class precision/recall, confusion, errors
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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


def headline(result: dict[str, Any], shifts: tuple[tuple[int, int], ...] = ((0, 0),)) -> dict[str, Any]:
    """The few numbers worth recording with a checkpoint (``digitlab eval --record``)."""
    return {"accuracy": result["accuracy"], "loss": round(result["loss"], 6),
            "errors": len(result["misclassified"]), "refused": result["refused"], "count": result["count"],
            "shifts": [list(s) for s in shifts]}


def format_report(result: dict[str, Any]) -> str:
    """The human table: accuracy, per-class precision/recall, the confusion matrix."""
    lines = [f"test images: {result['count']}   accuracy: {100 * result['accuracy']:.2f}%   "
             f"loss: {result['loss']:.4f}   errors: {len(result['misclassified'])}"
             + (f" (of which called 'not a digit': {result['refused']})" if result.get("refused") else ""), "",
             "digit  precision  recall"]
    for digit in range(10):
        lines.append(f"{digit:>5}  {100 * result['precision'][digit]:8.2f}%  {100 * result['recall'][digit]:6.2f}%")
    lines += ["", "confusion (rows: true digit, columns: predicted)",
              "      " + "".join(f"{d:>6}" for d in range(10)) + ("  none" if len(result["confusion"][0]) > 10 else "")]
    for digit, row in enumerate(result["confusion"]):
        lines.append(f"{digit:>6}" + "".join(f"{v:>6}" for v in row))
    shown = result["misclassified"][:20]
    more = len(result["misclassified"]) - len(shown)
    lines += ["", "misclassified indices: " + ", ".join(map(str, shown)) + (f" ... (+{more})" if more > 0 else "")]
    return "\n".join(lines)
