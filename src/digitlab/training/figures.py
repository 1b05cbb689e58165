"""The pictures a learner looks at: training curves, the confusion matrix, mistakes, filters and feature maps.

Each ``*_figure`` function draws one matplotlib ``Figure`` from plain data (a history, a confusion matrix, images and
their predictions) or from a model; ``save_png`` writes any of them atomically. matplotlib runs headless (Agg) and
is imported only when a picture is drawn. The text in the pictures is English: matplotlib's bundled font has no CJK
glyphs, so the Chinese report translates the captions around the pictures instead (docs/learning.md).

    save_png(curves_figure(history), "runs/x/curves.png")
    save_png(confusion_figure(result["confusion"]), "report/confusion.png")
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.files import atomic_write, atomic_write_text
from digitlab.training.data import data_config_of, to_input

# Hand-set 3x3 kernels of the tutorials' lesson on convolution: what a filter does to an image.
LESSON_KERNELS = {
    "horizontal edge": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float32),  # Sobel, responds to rows
    "vertical edge": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float32),
    "blur": np.full((3, 3), 1 / 9, dtype=np.float32),
}
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid)


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")  # headless: no display is needed, or opened
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``figure`` as PNG to ``path``, atomically (a reader sees the old picture or the new one)."""
    data = png_bytes(figure, dpi)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return Path(path)


# --- training curves -------------------------------------------------------------------------------------------------

def curves_figure(history: Sequence[dict[str, float]]):
    """Loss and accuracy per epoch (training, and validation when the run held a split out) and the learning rate."""
    figure = _figure(12, 3.6)
    loss, accuracy, rate = figure.subplots(1, 3)
    epochs = [row["epoch"] for row in history]

    def plot(axes, key: str, label: str, scale: float = 1.0) -> None:
        points = [(row["epoch"], row[key] * scale) for row in history if key in row]
        if points:
            x, y = zip(*points)
            axes.plot(x, y, marker="o", markersize=3, label=label)

    plot(loss, "train_loss", "training")
    plot(loss, "val_loss", "validation")
    loss.set_title("loss")
    plot(accuracy, "train_accuracy", "training", 100)
    plot(accuracy, "val_accuracy", "validation", 100)
    accuracy.set_title("accuracy (%)")
    plot(rate, "lr", "learning rate")
    rate.set_title("learning rate (at the end of each epoch)")
    for axes in (loss, accuracy, rate):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        if epochs:
            axes.set_xticks(_epoch_ticks(epochs))
    loss.legend()
    accuracy.legend()
    return figure


def _epoch_ticks(epochs: list[int]) -> list[int]:
    step = max(1, -(-len(epochs) // 10))  # at most about ten labels
    return list(range(epochs[0], epochs[-1] + 1, step))


def write_curves(history: Sequence[dict[str, float]], out_dir: str | os.PathLike, draw: bool = True) -> list[Path]:
    """``curves.png`` (when ``draw``) and ``history.csv`` of a run, written atomically beside its ``history.json``.

    A run of one epoch gets its table only: one point per line is not a curve, and drawing it is a sizeable share
    of a one-epoch run such as the `fast` recipe (docs/results.md, 'Time to accuracy').
    """
    out_dir = Path(out_dir)
    written = [save_png(curves_figure(history), out_dir / "curves.png")] if draw and len(history) > 1 else []
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out_dir / "history.csv", buffer.getvalue())
    return written + [out_dir / "history.csv"]


# --- how the model scores ---------------------------------------------------------------------------------------------

def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str]):
    """The confusion matrix twice: counts, and each row divided by its total (where each digit's errors go)."""
    counts = np.asarray(confusion, dtype=np.int64)  # (true digit, predicted class)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = [("none" if len(name) > 1 else name) for name in classes[:counts.shape[1]]]
    figure = _figure(13, 5.8)
    left, right = figure.subplots(1, 2)
    for axes, values, title, text in ((left, counts, "counts", "{:d}"),
                                      (right, rows * 100, "share of each true digit (%)", "{:.1f}")):
        shown = np.log1p(values) if values is counts else values
        axes.imshow(shown, cmap="Blues")
        for (i, j), value in np.ndenumerate(values):
            if value:
                dark = shown[i, j] > 0.6 * shown.max()
                axes.text(j, i, text.format(value), ha="center", va="center", fontsize=7,
                          color="white" if dark else "black")
        axes.set_xticks(range(counts.shape[1]), names)
        axes.set_yticks(range(counts.shape[0]), [str(d) for d in range(counts.shape[0])])
        axes.set_xlabel("predicted")
        axes.set_ylabel("true digit")
        axes.set_title(title)
    return figure


def per_class_figure(precision: Sequence[float], recall: Sequence[float]):
    """Precision and recall of each digit side by side, on an axis zoomed to where they differ."""
    precision, recall = np.asarray(precision) * 100, np.asarray(recall) * 100
    figure = _figure(9, 3.8)
    axes = figure.subplots()
    digits = np.arange(len(precision))
    axes.bar(digits - 0.2, precision, width=0.4, label="precision")
    axes.bar(digits + 0.2, recall, width=0.4, label="recall")
    low = min(precision.min(), recall.min())
    axes.set_ylim(max(0.0, np.floor(low) - 1), 100.2)
    axes.set_xticks(digits)
    axes.set_xlabel("digit")
    axes.set_ylabel("%")
    axes.set_title("precision (of the answers 'd', how many were d) and recall (of the d's, how many were found)")
    axes.legend(loc="lower right")
    axes.grid(axis="y", alpha=0.3)
    return figure


def montage(cells: Sequence[np.ndarray], columns: int, gap: int = 2, head: int = 0) -> np.ndarray:
    """RGB cells of one size (H, W, 3) in [0, 1] tiled row by row on white, ``head`` blank pixels above each row
    for a title: one image, so a grid of a hundred digits is one matplotlib call, not a hundred axes."""
    height, width = cells[0].shape[:2]
    rows = -(-len(cells) // columns)
    sheet = np.ones((rows * (height + head + gap), columns * (width + gap) - gap, 3))
    for index, cell in enumerate(cells):
        top = (index // columns) * (height + head + gap) + head
        left = (index % columns) * (width + gap)
        sheet[top:top + height, left:left + width] = cell
    return sheet


def _gray_cell(image: np.ndarray) -> np.ndarray:
    """uint8 (28, 28) -> RGB in [0, 1], as the tutorials show MNIST: bright ink on black."""
    return np.repeat(image[..., None] / 255.0, 3, axis=2)


def _scaled(values: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map to ``side`` x ``side`` (maps of every stage get one cell size)."""
    rows = np.arange(side) * values.shape[0] // side
    columns = np.arange(side) * values.shape[1] // side
    return values[rows][:, columns]


def digit_grid_figure(images: np.ndarray, titles: Sequence[str], colours: Sequence[str], heading: str,
                      columns: int = 10):
    """Digits (N, 28, 28) in a grid, each with a short title in its colour, under one heading."""
    head = 12
    figure = _figure(columns * 1.1, max(1, -(-len(images) // columns)) * 1.25 + 0.5)
    figure.suptitle(heading, fontsize=11)
    axes = figure.subplots()
    axes.axis("off")
    if not len(images):
        axes.text(0.5, 0.5, "none", ha="center", va="center", fontsize=14, transform=axes.transAxes)
        return figure
    axes.imshow(montage([_gray_cell(image) for image in images], columns, gap=4, head=head),
                interpolation="nearest")
    for index, (title, colour) in enumerate(zip(titles, colours)):
        x = (index % columns) * 32 + 14
        y = (index // columns) * (28 + head + 4) + head - 1
        axes.text(x, y, title, ha="center", va="bottom", fontsize=8, color=colour)
    return figure


def mistakes_figure(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                    limit: int = 100):
    """Every misclassified digit (the ``limit`` most confidently wrong), true -> predicted with the confidence."""
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:limit]
    names = [_short(name) for name in classes]
    titles = [f"{labels[i]} -> {names[predicted[i]]} {probabilities[i, predicted[i]]:.0%}" for i in order]
    heading = (f"{len(wrong)} of {len(labels):,} test digits misread"
               + (f" (the {len(order)} most confident shown)" if len(order) < len(wrong) else "")
               + ": true -> predicted, confidence")
    return digit_grid_figure(images[order], titles, ["tab:red"] * len(order), heading)


def samples_figure(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                   count: int = 40):
    """The first ``count`` test digits with what the model answered: green when right, red when wrong."""
    predicted = probabilities.argmax(1)[:count]
    names = [_short(name) for name in classes]
    titles = [f"{names[p]} ({probabilities[i, p]:.0%})" for i, p in enumerate(predicted)]
    colours = ["tab:green" if p == labels[i] else "tab:red" for i, p in enumerate(predicted)]
    return digit_grid_figure(images[:count], titles, colours, "test digits and the model's answers (confidence)")


def _short(name: str) -> str:
    return name if len(name) == 1 else "none"


# --- inside the network ----------------------------------------------------------------------------------------------

def first_layer(model: nn.Module) -> nn.Conv2d | nn.Linear | None:
    """The layer that reads the image: the first convolution, else a dense layer over all 784 pixels."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.in_features == 28 * 28:
            return module
    return None


def filters_figure(model: nn.Module, limit: int = 64):
    """The first layer's kernels as images (red positive, blue negative): what each unit looks for in the pixels."""
    layer = first_layer(model)
    if layer is None:
        raise ValueError("this network has no layer that reads the image directly")
    weights = layer.weight.detach().float().cpu()
    if isinstance(layer, nn.Conv2d):
        kernels = weights[:limit, 0].numpy()  # (out, k, k): the one input channel, gray
        kind = f"first convolution: {weights.shape[0]} kernels of {weights.shape[2]}x{weights.shape[3]}"
    else:
        kernels = weights[:limit].reshape(-1, 28, 28).numpy()  # a dense unit's weight per pixel
        kind = f"first dense layer: {weights.shape[0]} units' weights over the 28x28 pixels"
    columns = min(16, len(kernels))
    rows = -(-len(kernels) // columns)
    figure = _figure(columns * 0.75 + 0.4, rows * 0.75 + 0.6)
    figure.suptitle(kind + (f" (first {len(kernels)})" if len(kernels) < weights.shape[0] else ""), fontsize=10)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        axes.axis("off")
        if index < len(kernels):
            bound = float(np.abs(kernels[index]).max()) or 1.0
            axes.imshow(kernels[index], cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
    return figure


@torch.inference_mode()
def stage_maps(model: nn.Module, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The activations of each convolution stage for one uint8 digit (28, 28): (label, maps (C, H, W)) per stage.

    A stage is a convolution and what follows it up to its activation (pooling and batch norm included), read at the
    activation's output; a convolution with no activation module after it is read at its own output.
    """
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [module.register_forward_hook(lambda mod, _in, out: seen.append((mod, out.detach().clone())))
             for module in model.modules() if next(module.children(), None) is None]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(to_input(torch.from_numpy(np.ascontiguousarray(image))[None], data_config_of(model), device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    stages: list[tuple[str, np.ndarray]] = []
    for index, (module, output) in enumerate(seen):
        if not isinstance(module, nn.Conv2d):
            continue
        chosen = output
        for later, later_output in seen[index + 1:]:
            if isinstance(later, nn.Conv2d) or later_output.dim() != 4:
                break
            if isinstance(later, ACTIVATIONS):
                chosen = later_output
                break
        maps = chosen[0].float().cpu().numpy()  # (C, H, W)
        stages.append((f"stage {len(stages) + 1}: {maps.shape[0]}x{maps.shape[1]}x{maps.shape[2]}", maps))
    return stages


def caption_of_test_digit(index: int, label: int) -> str:
    """What a figure of one MNIST test image calls it: the digit it is, then where it is in the test set (the index
    alone, "test digit 0", read as the digit shown)."""
    return f"a {int(label)} (test image {index})"


def feature_maps_figure(model: nn.Module, image: np.ndarray, caption: str, per_stage: int = 8):
    """One digit and, row by row, the strongest activation maps of each convolution stage (each map scaled to its
    own range, bright = strong)."""
    from matplotlib import colormaps

    stages = stage_maps(model, image)
    if not stages:
        raise ValueError("this network has no convolution layers, so no feature maps")
    colour = colormaps["viridis"]
    cells = []
    for _, maps in stages:
        cells.append(_gray_cell(image))
        strongest = np.argsort(-maps.reshape(len(maps), -1).mean(1), kind="stable")[:per_stage]
        for channel in strongest:
            values = maps[channel] - maps[channel].min()
            values = values / (values.max() or 1.0)
            cells.append(colour(_scaled(values, 28))[..., :3])
        cells += [np.ones((28, 28, 3))] * (per_stage - len(strongest))
    head = 10
    figure = _figure((per_stage + 1) * 1.2, len(stages) * 1.35 + 0.6)
    figure.suptitle(f"{caption}: the {per_stage} most active maps of each convolution stage (channel number above)",
                    fontsize=10)
    axes = figure.subplots()
    axes.axis("off")
    axes.imshow(montage(cells, per_stage + 1, gap=4, head=head), interpolation="nearest")
    for row, (label, maps) in enumerate(stages):
        top = row * (28 + head + 4) + head - 1
        axes.text(0, top, label, ha="left", va="bottom", fontsize=7)
        strongest = np.argsort(-maps.reshape(len(maps), -1).mean(1), kind="stable")[:per_stage]
        for column, channel in enumerate(strongest, start=1):
            axes.text(column * 32 + 14, top, f"#{channel}", ha="center", va="bottom", fontsize=7)
    return figure


def kernels_figure(model: nn.Module | None, image: np.ndarray, learned: int = 3):
    """The tutorials' lesson: three hand-set kernels and three learned first-layer kernels, each over one digit.

    Top row the kernels, bottom row what each does to the digit (the convolution of its pixels in [0, 1]).
    """
    kernels = [(name, kernel) for name, kernel in LESSON_KERNELS.items()]
    layer = first_layer(model) if model is not None else None
    if isinstance(layer, nn.Conv2d):
        weights = layer.weight.detach().float().cpu()[:, 0]  # (out, k, k)
        strongest = torch.argsort(weights.flatten(1).norm(dim=1), descending=True)[:learned].tolist()
        kernels += [(f"learned #{i}", weights[i].numpy()) for i in strongest]
    pixels = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]  # (1, 1, 28, 28)
    figure = _figure((len(kernels) + 1) * 1.7, 4.0)
    figure.suptitle("what a convolution kernel does: kernel (top), the digit filtered by it (bottom)", fontsize=10)
    grid = figure.subplots(2, len(kernels) + 1, squeeze=False)
    grid[0, 0].imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    grid[0, 0].set_title("the digit", fontsize=8)
    grid[1, 0].text(0.5, 0.5, "red: +\nblue: -", ha="center", va="center", fontsize=8)
    for column, (name, kernel) in enumerate(kernels, start=1):
        bound = float(np.abs(kernel).max()) or 1.0
        grid[0, column].imshow(kernel, cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
        grid[0, column].set_title(name, fontsize=8)
        weight = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))[None, None]
        filtered = F.conv2d(pixels, weight, padding=kernel.shape[-1] // 2)[0, 0].numpy()
        grid[1, column].imshow(filtered, cmap="gray", interpolation="nearest")
    for axes in grid.flat:
        axes.axis("off")
    return figure

