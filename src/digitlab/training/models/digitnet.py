"""digitnet: the project's own default network, designed for CPU FLOPs as much as for accuracy.

Three convolution stages, each cut to the resolution it needs: one 5x5 convolution reads the 28x28 image and is
pooled straight away, so the expensive layers only ever see 14x14 and 7x7 maps. Pooling comes before batch norm
and ReLU (as in the tutorial networks) so the element-wise layers and their backward passes touch a quarter of
the values. Batch norm makes the net train fast at a high one-cycle learning rate; a dropout before the classifier
and the augmentation in ``augment.py`` do the regularising.

    (B, 1, 28, 28) -> conv5x5 -> pool -> (B, 32, 14, 14) -> conv3x3 -> pool -> (B, 48, 7, 7)
                   -> conv3x3 -> conv3x3 -> (B, 96, 7, 7) -> pool -> (B, 96, 3, 3) -> linear -> (B, 10 or 11)
"""

from __future__ import annotations

from torch import nn

from digitlab.training.models.registry import register_model


def _conv(in_channels: int, out_channels: int, kernel: int, pool: bool) -> list[nn.Module]:
    """conv (no bias: batch norm has one) [-> 2x2 max pool] -> batch norm -> ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers + [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


@register_model
def digitnet(widths: tuple[int, int, int] = (32, 48, 96), dropout: float = 0.1, classes: int = 10) -> nn.Module:
    """Conv5x5-Pool-Conv3-Pool-Conv3-Conv3-Pool-Dense with batch norm (the default; 148k parameters).

    ``classes=11`` adds an output for "not a digit" (see ``datasets/nondigits.py``).
    """
    w1, w2, w3 = widths
    return nn.Sequential(
        *_conv(1, w1, 5, pool=True),        # (B, w1, 14, 14)
        *_conv(w1, w2, 3, pool=True),       # (B, w2, 7, 7)
        *_conv(w2, w3, 3, pool=False),      # (B, w3, 7, 7)
        *_conv(w3, w3, 3, pool=False),      # (B, w3, 7, 7)
        nn.MaxPool2d(2),                    # (B, w3, 3, 3)
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(w3 * 3 * 3, classes),
    )


@register_model
def digitnet_fast(widths: tuple[int, int, int] = (16, 32, 64)) -> nn.Module:
    """Conv5x5-Pool-Conv3-Pool-Conv3-Pool-Dense10 with batch norm: digitnet cut down for time to accuracy.

    The `fast` recipes' network before digitnet_quick, which reaches their accuracy with half the work per image;
    kept so that models trained with it still load.
    """
    w1, w2, w3 = widths
    return nn.Sequential(
        *_conv(1, w1, 5, pool=True),        # (B, w1, 14, 14)
        *_conv(w1, w2, 3, pool=True),       # (B, w2, 7, 7)
        *_conv(w2, w3, 3, pool=True),       # (B, w3, 3, 3)
        nn.Flatten(),
        nn.Linear(w3 * 3 * 3, 10),
    )


class CentreCrop(nn.Module):
    """Keep the central part of each image, ``margin`` pixels in from every side."""

    def __init__(self, margin: int):
        super().__init__()
        self.margin = margin

    def forward(self, x):
        return x[..., self.margin:-self.margin, self.margin:-self.margin]

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


@register_model
def digitnet_quick(widths: tuple[int, int, int] = (16, 32, 128), crop: int = 0) -> nn.Module:
    """[Crop]-Conv5x5-Pool-Conv3x3-Pool-Dense-Dense, unpadded, with batch norm: the least work per image that reaches
    99 %.

    The `fast` recipe's network (docs/networks.md). Unpadded convolutions leave 24x24 and then 10x10 maps instead of
    28x28 and 14x14, a third less work in the layers that cost most, and the hidden dense layer does the rest of the
    sorting in one matrix product instead of a third convolution on 7x7 maps. ``crop=2`` reads only the central
    24x24 pixels, about another third less work: MNIST (and ``recognition.mnist_form``) fits each digit in a 20x20
    box centred by its ink, so the outer ring is nearly always paper.

        (B, 1, 28, 28) -> [crop] -> conv5x5 -> pool -> (B, w1, s1, s1) -> conv3x3 -> pool -> (B, w2, s2, s2)
                       -> linear -> (B, w3) -> linear -> (B, 10)           s1 = 12, s2 = 5 (crop 2: 10 and 4)
    """
    w1, w2, w3 = widths
    if not 0 <= crop <= 3:
        raise ValueError(f"crop must be 0 to 3 pixels, not {crop!r}")
    side = ((28 - 2 * crop - 4) // 2 - 2) // 2
    return nn.Sequential(
        *([CentreCrop(crop)] if crop else []),
        nn.Conv2d(1, w1, 5, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(w1), nn.ReLU(inplace=True),
        nn.Conv2d(w1, w2, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(w2), nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(w2 * side * side, w3), nn.ReLU(inplace=True),
        nn.Linear(w3, 10),
    )
