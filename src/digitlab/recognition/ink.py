"""The ink map: a gray working image and the ink's polarity -> how much ink covers each pixel, in [0, 1].

The ink is flipped to bright, the paper under it (with its uneven light) is estimated and subtracted, and what is
left is scaled so a stroke's core is 1 and the paper's noise 0. Everything after this stage reads coverage: a pixel
is part of a stroke above ``INK_LEVEL`` and of its soft rim above ``RIM_LEVEL``, and ``stroke_width`` measures the
strokes that way wherever a later stage needs their width. Also here, as this stage measures the paper most: the
ring along the image's edge that is nearly always paper (``border``), and numpy's percentiles at a fraction of the
cost (``percentiles``).

    ink, notes = ink_map(gray, "dark-on-light")     # (H, W) float32, bright strokes on black; what it measured
"""

from __future__ import annotations

import cv2
import numpy as np

INK_LEVEL = 0.5              # a pixel belongs to a stroke where its coverage exceeds this ...
RIM_LEVEL = 0.1              # ... and to the stroke's faint rim down to this (MNIST's 20x20 box holds the rim too)
BACKGROUND_SIDE = 64         # the paper and its uneven light are estimated at this coarser size: light varies slowly
MIN_CONTRAST = 0.06          # ink must differ from the paper by 6% of full brightness ...
MIN_INK_PIXELS = 12          # ... over at least this many working pixels, or the image counts as blank
HAIRLINE = 2.5               # strokes thinner than this many working pixels are found before the denoising breaks them


def ink_map(gray: np.ndarray, polarity: str) -> tuple[np.ndarray, dict]:
    """Gray (H, W) -> ink coverage (H, W) in [0, 1]: bright strokes on a black, flat background.

    The ink is flipped to bright, the paper (with its uneven light) estimated by a morphological opening - which
    removes every bright structure narrower than its window, i.e. the strokes - and subtracted. The result is scaled
    so a stroke's core is 1 and everything within the noise of the paper is 0.
    """
    raw = 1.0 - gray if polarity == "dark-on-light" else gray
    bright_ink = cv2.medianBlur(raw, 3)  # sensor noise and JPEG speckle
    paper = paper_level(bright_ink)
    residual = bright_ink - paper
    noise = _paper_noise(residual)
    strong = residual > max(6 * noise, MIN_CONTRAST)
    hairline = False
    if np.count_nonzero(strong) < MIN_INK_PIXELS or stroke_width(strong) < HAIRLINE:
        # A fine pen shrunk to the working size is a line narrower than a pixel, which the median filter breaks
        # into dashes or wipes out: such lines are found in the unfiltered pixels, where the paper's noise (and
        # with it the bar for ink) is measured again.
        raw_residual = raw - paper
        raw_noise = _paper_noise(raw_residual)
        raw_strong = raw_residual > max(6 * raw_noise, MIN_CONTRAST)
        if np.count_nonzero(raw_strong) >= MIN_INK_PIXELS and stroke_width(raw_strong) < HAIRLINE:
            residual, noise, strong, hairline = raw_residual, raw_noise, raw_strong, True
    notes = {"noise": noise, "ink_pixels": int(np.count_nonzero(strong)), "hairline": hairline}
    if notes["ink_pixels"] < MIN_INK_PIXELS:
        return np.zeros_like(gray), notes | {"contrast": float(residual.max(initial=0.0))}
    # Along a line narrower than a pixel the coverage wavers and only its brightest points reach a stroke's full
    # level, so it is scaled by its faint parts and widened a pixel.
    level = float(percentiles(residual[strong], [20 if hairline else 95])[0])
    floor = min(3 * noise, 0.5 * level)
    notes["contrast"] = level
    residual -= floor  # in place: this runs on every image, and each full-size temporary costs
    residual /= max(level - floor, 1e-6)
    ink = np.clip(residual, 0.0, 1.0, out=residual)
    if hairline:
        ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    return ink, notes


def paper_level(bright_ink: np.ndarray) -> np.ndarray:
    """The background under bright ink: an opening (min then max filter) wider than any stroke, on a coarse copy."""
    height, width = bright_ink.shape
    factor = (height * width) ** 0.5 / BACKGROUND_SIDE
    small = cv2.resize(bright_ink, (max(1, round(width / factor)), max(1, round(height / factor))),
                       interpolation=cv2.INTER_AREA)
    size = BACKGROUND_SIDE // 2 + 1  # wider than the thickest marker stroke
    # odd reflection continues a brightness ramp past the edge, so the opening stays exact up to the border
    padded = _reflect_odd(small, size)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)
    # Smoothed only where it is kept plus the blur's reach (17 taps at sigma 2, what OpenCV picks itself), so the
    # kept pixels are computed exactly as over the whole padded image, at a third of the cost.
    reach = 8
    inner = opened[size - reach:reach - size, size - reach:reach - size]
    opened = cv2.GaussianBlur(inner, (2 * reach + 1, 2 * reach + 1), 2.0)[reach:-reach, reach:-reach]
    return cv2.resize(opened, (width, height), interpolation=cv2.INTER_LINEAR)


def _reflect_odd(image: np.ndarray, width: int) -> np.ndarray:
    """``np.pad(image, width, mode="reflect", reflect_type="odd")``: past each edge, the mirror image turned over
    about the edge value (2 * edge - mirror). Built from OpenCV's borders, rows then columns as numpy does, at a
    quarter of np.pad's cost; where the image is not wider than the pad, numpy reflects again and again, so it is
    left to numpy."""
    if min(image.shape) <= width:
        return np.pad(image, width, mode="reflect", reflect_type="odd")
    for rows, columns in ((width, 0), (0, width)):
        edge = cv2.copyMakeBorder(image, rows, rows, columns, columns, cv2.BORDER_REPLICATE)
        mirror = cv2.copyMakeBorder(image, rows, rows, columns, columns, cv2.BORDER_REFLECT_101)
        image = 2 * edge - mirror
    return image


def _paper_noise(residual: np.ndarray) -> float:
    """Standard deviation of the paper's pixels in a residual where ink is positive: measured on the low side only
    (5th to 25th percentile of a normal distribution are 0.97 sigma apart), so ink may cover up to 3/4 of the image;
    and along the border too, which is paper even where ink covers more (a small scan of a digit that fills it)."""
    p5, p25 = percentiles(residual[::3, ::3], [5, 25])  # every 9th pixel: the same estimate, a ninth of the sort
    b5, b25 = percentiles(border(residual), [5, 25])
    return float(min(p25 - p5, b25 - b5) / 0.97)


def border(gray: np.ndarray) -> np.ndarray:
    """The pixels of a ring along the image's edge, 4% of its shorter side wide: nearly always paper."""
    height, width = gray.shape
    ring = max(1, round(0.04 * min(height, width)))
    return np.concatenate([gray[:ring].ravel(), gray[-ring:].ravel(), gray[:, :ring].ravel(),
                           gray[:, -ring:].ravel()])


def percentiles(values: np.ndarray, q: list[float]) -> np.ndarray:
    """``np.percentile(values, q)``, the same numbers (linear interpolation), at a fraction of its cost on a few
    thousand values: one partition at the ranks needed and no more. np.percentile's own checks and dispatch cost
    several times the partition itself, and it is called for every image."""
    values = np.ravel(values)
    rank = np.asarray(q, np.float64) / 100 * (values.size - 1)
    below = np.floor(rank).astype(np.intp)
    above = np.minimum(below + 1, values.size - 1)
    ranked = np.partition(values, sorted({*below.tolist(), *above.tolist()}))
    low, high, weight = ranked[below], ranked[above], rank - below
    step = high - low
    # numpy's interpolation: from the nearer neighbour, so that a weight of 1 gives exactly the upper value
    return np.where(weight >= 0.5, high - step * (1 - weight), low + step * weight)


def stroke_width(ink: np.ndarray) -> float:
    """The mean width of the strokes, in pixels: twice their area over their outline's length (a stroke of width w
    and length l has area w * l and an outline 2 * l long)."""
    mask = (ink > INK_LEVEL if ink.dtype != bool else ink).astype(np.uint8)
    outlines, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    length = sum(cv2.arcLength(outline, True) for outline in outlines)
    return 2 * float(np.count_nonzero(mask)) / max(length, 1.0)
