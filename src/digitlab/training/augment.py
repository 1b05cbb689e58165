"""Batched data augmentation on tensors: one random warp per image, applied to the whole batch at once.

No per-sample Python: the parameters are drawn as tensors, turned into (B, 2, 3) matrices (and, for elastic
distortion, a smooth displacement field) and applied with ``affine_grid`` + ``grid_sample``, so the same code runs
on CPU and GPU. Never flips: a mirrored 2 is no digit.

Beyond the affine warp, three changes teach handwriting that is not MNIST's (all off unless a recipe sets them):
``aspect`` stretches one axis against the other (digits that fill their box, narrow or wide hands), ``elastic``
bends strokes as a hand does (Simard et al., 2003), ``stroke`` thickens or thins the strokes (markers, fine
pens) and ``low_res`` shrinks an image to 8-14 pixels and back (small scans, blocky 8x8 sources).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate: float = 10.0   # degrees, uniform in [-rotate, rotate]
    shift: float = 0.1     # fraction of the image, uniform in [-shift, shift] on each axis
    scale: float = 0.1     # zoom uniform in [1 - scale, 1 + scale]
    shear: float = 0.0     # degrees, uniform in [-shear, shear]
    aspect: float = 0.0    # log of the width/height stretch, uniform in [-aspect, aspect]
    elastic: float = 0.0   # largest displacement of the smooth random field, in pixels
    stroke: float = 0.0    # share of images whose strokes grow by a pixel, and the same share that thin by one
    low_res: float = 0.0   # share of images shrunk to 8-14 pixels and enlarged back


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Warp each image of x (B, C, H, W), background 0 (ink is bright, paper dark) by its own random affine map."""
    b = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(cfg.rotate))
    shear = uniform(math.radians(cfg.shear))
    zoom = 1 + uniform(cfg.scale)
    stretch = torch.exp(uniform(cfg.aspect) / 2)  # width x stretch, height / stretch: the area stays
    zoom_x, zoom_y = zoom * stretch, zoom / stretch
    tx, ty = uniform(2 * cfg.shift), uniform(2 * cfg.shift)  # affine_grid works in [-1, 1]: width 2

    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # theta maps output coordinates to input coordinates, so it is the inverse of the zoom we want
    theta = torch.stack([
        torch.stack([cos / zoom_x, (-sin + cos * tan) / zoom_y, tx], dim=1),
        torch.stack([sin / zoom_x, (cos + sin * tan) / zoom_y, ty], dim=1),
    ], dim=1).to(device=x.device, dtype=x.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    if cfg.elastic:
        grid = grid + elastic_field(x.shape, cfg.elastic, generator).to(device=x.device, dtype=x.dtype)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.stroke:
        x = random_stroke_width(x, cfg.stroke, generator)
    if cfg.low_res:
        x = random_low_res(x, cfg.low_res, generator)
    return x


def elastic_field(shape, pixels: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A smooth random displacement (B, H, W, 2) in grid_sample's [-1, 1] units, at most ``pixels`` pixels: random
    offsets on a 4x4 lattice, enlarged bicubically, so neighbouring pixels move together as a bent stroke does."""
    b, _, h, w = shape
    coarse = torch.rand(b, 2, 4, 4, generator=generator) * 2 - 1
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).clamp_(-1, 1)
    field[:, 0] *= 2 * pixels / w
    field[:, 1] *= 2 * pixels / h
    return field.permute(0, 2, 3, 1)


def random_stroke_width(x: torch.Tensor, share: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Grow the strokes of a ``share`` of the images by a pixel (a 3x3 grey dilation) and thin the strokes of
    another ``share`` by darkening their soft rim (coverage cubed): a grey erosion would wipe out MNIST's strokes,
    which are little more than two pixels wide, where thinning keeps every stroke's core."""
    draw = torch.rand(x.shape[0], generator=generator).to(x.device).view(-1, 1, 1, 1)
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    return torch.where(draw < share, thick, torch.where(draw > 1 - share, x ** 3, x))


def random_low_res(x: torch.Tensor, share: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shrink a ``share`` of the images to 8-14 pixels a side (area averaging) and enlarge them back bilinearly: a
    small scan, or an 8x8 source, fitted to MNIST's size. One size per batch keeps it one call."""
    chosen = (torch.rand(x.shape[0], generator=generator) < share).to(x.device)
    if not chosen.any():
        return x
    side = int(torch.randint(8, 15, (1,), generator=generator))
    small = F.adaptive_avg_pool2d(x[chosen], side)
    blurred = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    blurred = blurred * (x[chosen].amax(dim=(1, 2, 3), keepdim=True) / blurred.amax(dim=(1, 2, 3), keepdim=True)
                         .clamp_min(1e-6))  # as bright as before: the preprocessing scales ink to full coverage
    x = x.clone()
    x[chosen] = blurred.clamp_(0, 1)
    return x
