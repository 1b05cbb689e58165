"""Batched data augmentation on tensors: one random affine warp per image, applied to the whole batch at once.

No per-sample Python: the parameters are drawn as tensors, turned into (B, 2, 3) matrices and applied with
``affine_grid`` + ``grid_sample``, so the same code runs on CPU and GPU. Never flips: a mirrored 2 is no digit.
Optionally an elastic distortion (Simard et al., 2003) is added to the same sampling grid: a random displacement
per pixel, smoothed by a Gaussian so neighbouring pixels move together, as a hand's wobble would move the stroke.
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
    elastic: float = 0.0   # elastic distortion's strength in pixels (Simard's alpha; 0: none)
    elastic_sigma: float = 4.0  # how smooth its displacement field is, in pixels (Simard's sigma)


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
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    if cfg.elastic > 0:
        grid = grid + elastic_field(x.shape, cfg.elastic, cfg.elastic_sigma, generator).to(grid)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def elastic_field(shape, alpha: float, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A smooth random displacement per pixel, (B, H, W, 2) in ``grid_sample``'s units: uniform noise in [-1, 1]
    blurred by a Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels."""
    b, _, h, w = shape
    noise = torch.rand(b, 2, h, w, generator=generator) * 2 - 1
    blurred = gaussian_matrix(h, sigma) @ noise @ gaussian_matrix(w, sigma).T  # columns, then rows
    pixels = torch.tensor([2.0 / w, 2.0 / h])  # one pixel in [-1, 1] grid units, for x and y
    return alpha * blurred.permute(0, 2, 3, 1) * pixels


def gaussian_matrix(n: int, sigma: float) -> torch.Tensor:
    """(n, n): multiplying a length-n signal by it blurs the signal by a Gaussian of ``sigma`` samples, mirrored at
    the ends (a batched matrix product is far cheaper on CPU than a one-channel convolution)."""
    radius = min(n - 1, max(1, int(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps = taps / taps.sum()
    source = torch.arange(n).view(-1, 1) + offsets                      # (n, taps): the sample each tap reads
    source = torch.where(source < 0, -source, source)
    source = torch.where(source >= n, 2 * (n - 1) - source, source)      # mirrored at both ends
    matrix = torch.zeros(n, n)
    matrix.scatter_add_(1, source, taps.expand(n, -1).contiguous())
    return matrix
