"""How well a model reads labelled digits, from its outputs alone: accuracy, loss, per-class precision and recall,
the confusion matrix and the mistakes; in numpy, so a model run by onnxruntime is scored without PyTorch.

    logits = engine_logits(engine, images)         # uint8 (N, 28, 28) -> (N, classes), any recognition engine
    result = report(logits, labels)                # the test set's figures (`digitlab eval`)
    result = score_folder(lambda images: engine_logits(engine, images), load_folder("mine/"), classes)
    print(format_report(result))

``training.evaluate`` gives the same figures for a PyTorch network (its ``infer`` makes the logits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitlab.labels import NOT_A_DIGIT, normalisation_of
from digitlab.recognition.engine import normalise

# Test-time augmentation: the image itself and its 1-pixel translations. Never flips: they change digits.
TTA_SHIFTS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0))
# Images per model call: on a CPU, batches that fit the caches beat fewer, larger calls
# (measured: docs/results.md, 'Scoring the test set').
BATCH = 256


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def engine_logits(engine, images: np.ndarray, shifts: tuple[tuple[int, int], ...] = ((0, 0),),
                  batch_size: int = BATCH) -> np.ndarray:
    """Logits (N, classes) of a ``recognition.engine`` for uint8 images (N, 28, 28), normalised as its metadata says.

    With ``shifts`` ((dy, dx) translations, as ``training.evaluate.infer`` takes them) the softmax outputs of the
    shifted copies are averaged and returned as log-probabilities, so argmax and the loss still apply.
    """
    mean, std = normalisation_of(engine.metadata)
    outputs = [np.zeros((0, len(engine.metadata["classes"])), np.float32)]
    for start in range(0, len(images), batch_size):
        x = normalise(np.asarray(images[start:start + batch_size], np.float32) / 255.0, mean, std)  # (B, 1, 28, 28)
        if shifts == ((0, 0),):
            outputs.append(engine.logits(x).astype(np.float32))
            continue
        probabilities = sum(np.exp(log_softmax(engine.logits(np.roll(x, shift, axis=(2, 3))).astype(np.float64)))
                            for shift in shifts)
        outputs.append(np.log(probabilities / len(shifts)).astype(np.float32))
    return np.concatenate(outputs)


def report(logits, labels) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall, confusion matrix (rows: true, columns: predicted), errors.

    ``logits`` (N, classes) and ``labels`` (N,): numpy arrays or anything that converts to one (a CPU tensor).
    A network with an 11th "not a digit" output is scored strictly: a digit it calls "not a digit" is an error
    (counted apart as ``refused``), since the recogniser would give no answer for it.
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    predicted = logits.argmax(axis=1)
    confusion = np.zeros((10, logits.shape[1]), np.int64)  # (true digit, predicted class)
    np.add.at(confusion, (labels, predicted), 1)
    true_positive = np.diag(confusion[:, :10]).astype(np.float64)
    precision = true_positive / np.maximum(confusion[:, :10].sum(axis=0), 1)
    recall = true_positive / np.maximum(confusion.sum(axis=1), 1)
    loss = -log_softmax(logits)[np.arange(len(labels)), labels].mean() if len(labels) else float("nan")
    return {
        "count": len(labels),
        "accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "loss": float(loss),
        "precision": [round(float(v), 6) for v in precision],
        "recall": [round(float(v), 6) for v in recall],
        "confusion": confusion.tolist(),
        "refused": int((predicted >= 10).sum()),
        "misclassified": np.flatnonzero(predicted != labels).tolist(),
    }


def score_folder(logits_of, data, classes: list[str], temperature: float = 1.0) -> dict[str, Any]:
    """``report`` on a labelled folder (``datasets.folders.LabelledImages``), each mistake named by its file.

    ``logits_of`` turns uint8 images (N, 28, 28) into the model's logits (N, classes), and ``classes`` names its
    outputs. The digits are scored as the test set is; images labelled "not a digit" are counted apart (how many the
    model refused), and those whose label the model has no output for are returned under ``dropped``
    (``folders.Skipped``). ``temperature`` (the model's calibration) makes each mistake's confidence the one
    `predict` would show.
    """
    from digitlab.datasets.folders import for_model

    images, targets, paths, dropped = for_model(data, classes)
    refusal = classes.index(NOT_A_DIGIT) if NOT_A_DIGIT in classes else None
    digit_rows = np.flatnonzero(targets != (-1 if refusal is None else refusal))
    if not len(digit_rows):
        raise ValueError(f"{data.root}: no labelled digit to score ({len(data)} usable images, "
                         f"{len(data.skipped) + len(dropped)} skipped)")
    logits = np.asarray(logits_of(images), np.float64)
    probabilities = np.exp(log_softmax(logits / temperature))
    result = report(logits[digit_rows], targets[digit_rows])

    def mistake(row: int) -> dict[str, Any]:
        read = int(probabilities[row].argmax())
        return {"path": paths[row], "label": classes[targets[row]], "read": classes[read],
                "confidence": round(float(probabilities[row, read]), 6)}

    result["mistakes"] = [mistake(int(digit_rows[i])) for i in result["misclassified"]]
    result["misclassified"] = [m["path"] for m in result["mistakes"]]
    if refusal is not None and (targets == refusal).any():
        rows = np.flatnonzero(targets == refusal)
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
