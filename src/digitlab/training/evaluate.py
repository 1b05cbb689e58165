"""A PyTorch network's logits, and its scores: ``infer`` turns images into logits, ``digitlab.scores`` turns logits
into a report (the same figures for a model onnxruntime runs).

    logits = infer(model, images)                      # uint8 (N, 28, 28) -> (N, classes)
    report = evaluate(model, images, labels)           # accuracy, per-class precision/recall, confusion, errors
    report = evaluate_folder(model, load_folder("mine/"))   # the same on people's own images, mistakes by file
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.scores import BATCH, report, score_folder
from digitlab.training.data import data_config_of, to_input

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


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = BATCH,
             shifts: tuple[tuple[int, int], ...] = ((0, 0),)) -> dict[str, Any]:
    return report(infer(model, images, batch_size, shifts), labels)


def evaluate_folder(model: nn.Module, data, shifts: tuple[tuple[int, int], ...] = ((0, 0),),
                    temperature: float = 1.0) -> dict[str, Any]:
    """``scores.score_folder`` for a PyTorch network: its report on a labelled folder, mistakes named by file."""
    classes = list(data_config_of(model).classes)
    return score_folder(lambda images: infer(model, torch.from_numpy(images), shifts=shifts), data, classes,
                        temperature)
