"""A Keras-style layer table for any network: layer, output shape, parameters, totals.

Layers are named as Keras names them, by type and a count of that type (``conv2d_1 (Conv2d)``, ``re_lu_2 (ReLU)``),
so the table reads like the tutorials' ``model.summary()``.

    print(summary_table(create_model("cnn5x5_dense1000")))
"""

from __future__ import annotations

import re
from collections import Counter

import torch
from torch import nn


def keras_name(kind: str, counts: Counter) -> str:
    """``Conv2d`` -> ``conv2d_1`` the first time, ``conv2d_2`` the next: a type in snake case and its count."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", kind).lower()
    counts[snake] += 1
    return f"{snake}_{counts[snake]}"


def layer_rows(model: nn.Module, input_shape=(1, 1, 28, 28)) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, output shape without batch, parameter count) for each leaf layer, in the order they run."""
    rows: list[tuple[str, tuple[int, ...], int]] = []
    counts: Counter = Counter()
    hooks = []
    for module in model.modules():
        if next(module.children(), None) is not None:
            continue
        own = sum(p.numel() for p in module.parameters(recurse=False))

        def hook(mod, _inputs, output, own=own):
            kind = type(mod).__name__
            rows.append((f"{keras_name(kind, counts)} ({kind})", tuple(output.shape[1:]), own))

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def summary_table(model: nn.Module, title: str = "") -> str:
    rows = layer_rows(model)
    header = f"{'Layer (type)':<34}{'Output Shape':<22}{'Param #':>12}"
    rule = "=" * len(header)
    lines = [f'Model: "{title}"'] if title else []
    lines += [rule, header, rule]
    for name, shape, params in rows:
        lines.append(f"{name:<34}{str((None, *shape)):<22}{params:>12,}")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", rule]
    return "\n".join(lines)
