"""A glyph's ink -> the 28x28 form MNIST's digits have: the last stage of reading a digit.

MNIST was made by fitting each digit into a 20x20 box keeping its aspect ratio (anti-aliased), then placing it in a
28x28 field so its centre of mass lies at the centre, bright ink on a dark background; its writers used one kind of
pen. ``to_mnist`` does the same to a crop, after bringing its strokes into the range of widths MNIST's have
(``even_strokes``), so a hairline or a marker reaches the network as the pen it was trained on.

    image = to_mnist(crop)          # (h, w) in [0, 1], bright ink -> (28, 28) float32
"""

from __future__ import annotations

import cv2
import numpy as np

from digitlab.recognition.ink import INK_LEVEL, RIM_LEVEL, percentiles, stroke_width

BOX, FIELD = 20, 28          # MNIST: fit into 20x20, centre in 28x28
STROKE_WIDTHS = (1.6, 2.4, 3.7)   # MNIST's stroke width in its 28x28 field: 5th percentile, median, 95th
PEN_WIDTH_RANK = 25          # a marker's width: this percentile of twice the distance to the paper along its strokes


def to_mnist(crop: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """A digit's ink (h, w) -> (28, 28) float32: fitted into 20x20 keeping its aspect, centre of mass at the centre.

    MNIST shifted whole pixels, so its centres of mass sit within half a pixel of (14, 14); so do ours. ``steps``,
    when given, receives the crop, the fitted digit and where its centre of mass put it (``preprocess.STEPS``).
    """
    crop = even_strokes(crop.astype(np.float32))
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    digit = np.clip(cv2.resize(crop.astype(np.float32), size, interpolation=interpolation), 0.0, 1.0)
    h, w = digit.shape
    mass = float(digit.sum())
    if mass > 0:
        cy = float((digit.sum(axis=1) * np.arange(h)).sum() / mass)
        cx = float((digit.sum(axis=0) * np.arange(w)).sum() / mass)
    else:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    top = int(np.clip(round(FIELD / 2 - cy), 0, FIELD - h))
    left = int(np.clip(round(FIELD / 2 - cx), 0, FIELD - w))
    field_ = np.zeros((FIELD, FIELD), np.float32)
    field_[top:top + h, left:left + w] = digit
    if steps is not None:
        steps |= {"crop": crop, "fit": digit, "centre": {"mass": [cx, cy], "corner": [left, top]}}
    return field_


def even_strokes(crop: np.ndarray) -> np.ndarray:
    """A digit's ink with strokes as wide as MNIST's, where they would be far thinner or thicker once fitted.

    A hairline pen on a large drawing shrinks to a faint trace; a marker or a binarised 8x8 scan to a blob. MNIST's
    writers used one kind of pen, and a network trained on them reads a stroke best at their width, so strokes
    outside MNIST's 5th-95th percentile are grown (dilated) or thinned (eroded) to its median, in the crop's pixels.
    A thinned digit is cut to its thinned ink, so it fills the 20x20 box as MNIST's digits do.
    """
    thin, typical, thick = STROKE_WIDTHS
    scale = BOX / max(crop.shape)
    width = stroke_width(crop) * scale
    if thin <= width <= thick:
        return crop
    if width < thin:
        radius = _radius(width, scale)
        if radius < 1:
            return crop
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return cv2.dilate(np.pad(crop, radius), kernel)
    # A marker fills small loops, and a filled loop's area makes the mean width far wider than the pen: thinned by
    # that, the digit's shape is worn away. The pen's own width is read where the strokes are narrow, along their
    # centre lines (ridges of the distance to the paper). Chosen on the other writers' benchmark: docs/handwriting.md,
    # 'Marker digits thinned out of shape'.
    mask = np.pad((crop > INK_LEVEL).astype(np.uint8), 1)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 5)[1:-1, 1:-1]  # distance from the stroke's edge
    ridge = (inside > 0) & (inside >= cv2.dilate(inside, np.ones((3, 3), np.uint8)) - 1e-3)
    if ridge.any():
        width = min(width, max(2 * float(percentiles(inside[ridge], [PEN_WIDTH_RANK])[0]) * scale, thick))
    radius = _radius(width, scale)
    if radius < 1:
        return crop
    # Thinned by the distance from the edge, not by a gray erosion: a shallow dip inside a filled loop would spread
    # over the whole kernel as a gray disk. The new edge rises over as many pixels as the old one did: at least one
    # fitted pixel, as MNIST's anti-aliasing, and as wide as a blurred scan's soft edge, which a hard edge would
    # turn into another digit's outline (docs/handwriting.md, 'A thinned blurred digit's edge made hard').
    ramp = max(edge_width(crop, mask[1:-1, 1:-1]), 1 / scale)
    thinned = np.minimum(crop, np.clip((inside - radius) / ramp + 0.5, 0.0, 1.0)).astype(np.float32)
    if np.count_nonzero(thinned > INK_LEVEL) < 0.2 * np.count_nonzero(crop > INK_LEVEL):
        return crop
    ys, xs = np.nonzero(thinned > RIM_LEVEL)
    return thinned[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _radius(width: float, scale: float) -> int:
    """How many crop pixels a side to grow (thin) strokes ``width`` wide once fitted to bring them to MNIST's median.
    Growing (thinning) by r pixels a side also grows (shrinks) the crop by 2r, and with it the fit's scale: r solves
    (w + 2r) * BOX / (side + 2r) = typical for the crop's stroke width w and longer side."""
    typical = STROKE_WIDTHS[1]
    return round(abs(typical / scale - width / scale) / (2 * (1 - typical / BOX)))


def edge_width(ink: np.ndarray, mask: np.ndarray) -> float:
    """How many pixels the ink's edge takes to rise from paper to a stroke's full coverage, on average along its
    outline (``mask``: the ink above half coverage). Between a tenth and nine tenths it rises over four fifths of
    the whole rise, if the edge is a straight ramp; a hard edge gives under a pixel, a blurred scan's as much as its
    stroke is wide."""
    outlines, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    length = sum(cv2.arcLength(outline, True) for outline in outlines)
    rising = np.count_nonzero((ink > RIM_LEVEL) & (ink < 1 - RIM_LEVEL))
    return rising / max(length, 1.0) / (1 - 2 * RIM_LEVEL)
