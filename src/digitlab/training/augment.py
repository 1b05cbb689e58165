"""Batched data augmentation on tensors: one random affine warp per image, applied to the whole batch at once.

No per-sample Python: the parameters are drawn as tensors, turned into (B, 2, 3) matrices and applied with
``affine_grid`` + ``grid_sample``, so the same code runs on CPU and GPU. Never flips: a mirrored 2 is no digit.
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


def random_affine(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Warp each image of x (B, C, H, W), background 0 (ink is bright, paper dark) by its own random affine map."""
    b = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(cfg.rotate))
    shear = uniform(math.radians(cfg.shear))
    zoom = 1 + uniform(cfg.scale)
    tx, ty = uniform(2 * cfg.shift), uniform(2 * cfg.shift)  # affine_grid works in [-1, 1]: width 2

    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # theta maps output coordinates to input coordinates, so it is the inverse of the zoom we want
    theta = torch.stack([
        torch.stack([cos / zoom, (-sin + cos * tan) / zoom, tx], dim=1),
        torch.stack([sin / zoom, (cos + sin * tan) / zoom, ty], dim=1),
    ], dim=1).to(device=x.device, dtype=x.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
