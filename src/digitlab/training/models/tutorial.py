"""The five networks of the classic "Keras CNN on MNIST" tutorials, layer for layer, so a learner recognises them.

Each takes a normalised (B, 1, 28, 28) batch and returns (B, 10) logits; the softmax the tutorials put last is
left to the loss (and to ``predict``). Parameter counts match the tutorials' ``model.summary()`` exactly.

Where a tutorial writes Conv -> ReLU -> MaxPool we write Conv -> MaxPool -> ReLU: ReLU is monotonic, so the two
compute the same function, but the ReLU (and its backward pass) then touches a quarter of the values, which is
the largest single saving in a CPU epoch.
"""

from __future__ import annotations

from torch import nn

from digitlab.training.models.registry import register_model


@register_model
def cnn5x5_dense1000() -> nn.Module:
    """Conv32@5x5-Pool-Conv64@5x5-Pool-Dense1000-Dense10, valid padding (the 99.12% tutorial)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),     # (B, 32, 12, 12)
        nn.Conv2d(32, 64, 5), nn.MaxPool2d(2), nn.ReLU(inplace=True),    # (B, 64, 4, 4)
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 1000), nn.ReLU(inplace=True),
        nn.Linear(1000, 10),
    )


@register_model
def tinyvgg_dropout() -> nn.Module:
    """Conv5-Conv5-Pool-Conv10-Conv10-Pool-Dense128-Dropout0.5-Dense10, same padding (65,788 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 5, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(5, 5, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(inplace=True),     # (B, 5, 14, 14)
        nn.Conv2d(5, 10, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(10, 10, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(inplace=True),   # (B, 10, 7, 7)
        nn.Flatten(),
        nn.Linear(10 * 7 * 7, 128), nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


@register_model
def conv32_dense128() -> nn.Module:
    """Conv32@3x3-Flatten-Dense128-Dense10, no pooling (the 98.20% tutorial; most weights in one dense layer)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True),                      # (B, 32, 26, 26)
        nn.Flatten(),
        nn.Linear(32 * 26 * 26, 128), nn.ReLU(inplace=True),
        nn.Linear(128, 10),
    )


@register_model
def conv3_dense64() -> nn.Module:
    """Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10, 3x3 valid (the TensorFlow-guide style network)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.MaxPool2d(2), nn.ReLU(inplace=True),     # (B, 32, 13, 13)
        nn.Conv2d(32, 64, 3), nn.MaxPool2d(2), nn.ReLU(inplace=True),    # (B, 64, 5, 5)
        nn.Conv2d(64, 64, 3), nn.ReLU(inplace=True),                     # (B, 64, 3, 3)
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64), nn.ReLU(inplace=True),
        nn.Linear(64, 10),
    )


@register_model
def mlp_3x256() -> nn.Module:
    """MLP 784-256-256-256-10 with ReLU (no convolution: the baseline the CNNs beat)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.ReLU(inplace=True),
        nn.Linear(256, 256), nn.ReLU(inplace=True),
        nn.Linear(256, 256), nn.ReLU(inplace=True),
        nn.Linear(256, 10),
    )
