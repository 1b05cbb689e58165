"""Glyphs: the ink map -> the regions to read as digits, left to right, and each region's ink cropped.

Strokes are the ink above half coverage, connected (``components``; specks dropped). In single-digit mode all of
them are one glyph, unless their shape says they are no single digit (``single_digit_doubt``: a word, a dash, a row
of digits). In multi-digit mode pieces above one another are one digit broken (``merge_broken``) and a region far
wider than a digit is cut where digits would touch (``split_touching``). A region's crop keeps its strokes' soft rim
and a side written fainter than the rest (``region_ink``, ``faint_ink``), and nothing of another digit's.

    labels, areas, regions = find_glyphs(ink, multi=True)
    crops = [region_ink(ink, labels, areas, region) for region in regions]     # each (h, w) in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitlab.recognition.ink import INK_LEVEL, RIM_LEVEL, stroke_width

ONE_PIECE_WIDEST = 3.0       # one stroke at most this many times wider than tall may be one digit written flat
RIM_PIXELS = 4               # a crop reaches this many working pixels beyond the strokes for their faint rim
FAINT_LEVEL = 0.3            # a side written fainter, where it is joined to the strokes, is kept down to this ...
FAINT_WIDTHS = 3             # ... where narrower than this many stroke widths (shading and uneven light are wider)


@dataclass
class Region:
    """A set of strokes taken as one digit: component labels and their joint box in working pixels."""

    labels: list[int]
    x: int
    y: int
    width: int
    height: int
    area: int
    cut: bool = False            # cut out of touching digits by `split_touching`

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def merged(self, other: "Region") -> "Region":
        x, y = min(self.x, other.x), min(self.y, other.y)
        right, bottom = max(self.right, other.right), max(self.bottom, other.bottom)
        return Region(self.labels + other.labels, x, y, right - x, bottom - y, self.area + other.area,
                      self.cut or other.cut)


def find_glyphs(ink: np.ndarray, multi: bool) -> tuple[np.ndarray, np.ndarray, list[Region]]:
    """The regions to read, left to right: all the ink as one digit, or (``multi``) one region per digit.
    Returns them with the component label image their ``labels`` refer to and the area of every label."""
    labels, areas, regions = components(ink)
    if not regions:
        return labels, areas, []
    if not multi:
        whole = regions[0]
        for region in regions[1:]:
            whole = whole.merged(region)
        return labels, areas, [whole]
    regions = merge_broken(regions)
    digit_height = int(np.median([r.height for r in regions]))
    split = [piece for r in regions for piece in split_touching(ink, labels, r, digit_height)]
    return labels, areas, sorted(split, key=lambda r: r.x)


def components(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Region]]:
    """Connected strokes (8-connectivity) without specks: the label image, the area of each stroke label (index 0,
    the background, unused), and one Region per component kept.

    Labelled inside the bounding box of the ink only: computing the statistics costs in proportion to the area
    scanned, and a digit usually covers a small part of the picture. Labels keep the order of a full-image scan.
    """
    mask = (ink > INK_LEVEL).astype(np.uint8)
    x0, y0, width, height = cv2.boundingRect(mask)
    labels = np.zeros(ink.shape, np.int32)
    if width == 0:
        return labels, np.zeros(1, np.int32), []
    count, inside, stats, _ = cv2.connectedComponentsWithStats(mask[y0:y0 + height, x0:x0 + width], connectivity=8)
    labels[y0:y0 + height, x0:x0 + width] = inside
    stats[:, 0] += x0
    stats[:, 1] += y0
    areas = stats[:, cv2.CC_STAT_AREA]
    regions = [Region([i], *(int(v) for v in stats[i, :5])) for i in range(1, count)]
    if not regions:
        return labels, areas, []
    largest = max(r.area for r in regions)
    return labels, areas, [r for r in regions if r.area >= max(4, 0.02 * largest)]


def merge_broken(regions: list[Region]) -> list[Region]:
    """Join pieces that sit above one another (a 5's detached bar, a broken 4): digits are written side by side."""
    regions = sorted(regions, key=lambda r: r.x)
    merged: list[Region] = []
    for region in regions:
        if merged and _horizontal_overlap(merged[-1], region) > 0.5:
            merged[-1] = merged[-1].merged(region)
        else:
            merged.append(region)
    return merged


def _horizontal_overlap(a: Region, b: Region) -> float:
    overlap = min(a.right, b.right) - max(a.x, b.x)
    return overlap / max(1, min(a.width, b.width))


def split_touching(ink: np.ndarray, labels: np.ndarray, region: Region, digit_height: int) -> list[Region]:
    """Cut a region far wider than one digit at the columns with least ink near where equal-width digits would meet."""
    count = round(region.width / (0.75 * digit_height))
    if count < 2 or region.width < 1.2 * region.height:
        return [region]
    inside = owned(labels[region.y:region.bottom, region.x:region.right], region)
    profile = (ink[region.y:region.bottom, region.x:region.right] * inside).sum(axis=0)
    cuts, window = [], max(1, region.width // (3 * count))
    for k in range(1, count):
        guess = round(k * region.width / count)
        lo, hi = max(1, guess - window), min(region.width - 1, guess + window)
        cuts.append(lo + int(np.argmin(profile[lo:hi])) if hi > lo else guess)
    pieces, edges = [], [0, *cuts, region.width]
    for left, right in zip(edges[:-1], edges[1:]):
        rows = np.nonzero(inside[:, left:right].any(axis=1))[0]
        if len(rows) == 0:
            continue
        pieces.append(Region(region.labels, region.x + left, region.y + int(rows[0]), right - left,
                             int(rows[-1] - rows[0] + 1), int(inside[:, left:right].sum()), cut=True))
    return pieces


def single_digit_doubt(region: Region, areas: np.ndarray, ink: np.ndarray | None = None) -> str | None:
    """Why the ink of a single-digit image is no single digit, or None. A model that knows ten classes would read a
    word, a dash or a row of digits as some digit; shapes no MNIST digit has are turned away before it is asked.
    Hardly any MNIST digit is twice as wide as tall, and a digit rarely breaks into more than 3 pieces; but one
    written flat, or stretched into a wide box, is: ink up to ONE_PIECE_WIDEST times wider than tall is refused
    only when it lies in several pieces (digits in a row stand apart, a flat 0 or 4 is one stroke).

    Pieces are counted where the strokes are found (half coverage) and, given ``ink``, again down to their faint
    rim: a thin line enlarged from a small picture falls apart into beads at half coverage, though its rim still
    joins them, while the letters of a word stay apart at any level."""
    aspect = region.width / region.height
    areas = areas[region.labels]
    pieces = int((areas >= 0.1 * areas.max()).sum())
    if pieces > 1 and ink is not None and (pieces > 3 or aspect > 2.0):
        window = ink[region.y:region.bottom, region.x:region.right] > RIM_LEVEL
        _, _, stats, _ = cv2.connectedComponentsWithStats(window.astype(np.uint8), connectivity=8)
        rim_areas = stats[1:, cv2.CC_STAT_AREA]
        pieces = min(pieces, int((rim_areas >= 0.1 * rim_areas.max(initial=0)).sum()))
    if aspect > ONE_PIECE_WIDEST or (aspect > 2.0 and pieces > 1):
        return f"not one digit: the ink is {aspect:.1f} times wider than tall (several digits? use multi-digit mode)"
    if pieces > 3:
        return f"not one digit: the ink is in {pieces} separate pieces"
    return None


# --- a glyph's ink ----------------------------------------------------------------------------------------------------

def region_ink(ink: np.ndarray, labels: np.ndarray, areas: np.ndarray, region: Region) -> np.ndarray:
    """A region's ink, cropped: its strokes with their soft rim, other strokes left out.

    Strokes are found at half coverage, but MNIST's 20x20 box holds every non-zero pixel, the faint rim too; so the
    crop grows by a few pixels around the strokes and is trimmed to where the rim fades out. A side written fainter
    than the rest is kept too, lifted to a stroke's coverage (``faint_ink``).
    """
    side = 0 if region.cut else RIM_PIXELS  # a piece cut from touching digits must not grow into its neighbour
    faint = None if region.cut else faint_ink(ink, labels, areas, region)
    top, bottom, left, right = region.y, region.bottom, region.x, region.right
    if faint is not None:
        fx, fy, fw, fh = cv2.boundingRect(faint)
        top, bottom, left, right = min(top, fy), max(bottom, fy + fh), min(left, fx), max(right, fx + fw)
    y0, y1 = max(0, top - RIM_PIXELS), min(ink.shape[0], bottom + RIM_PIXELS)
    x0, x1 = max(0, left - side), min(ink.shape[1], right + side)
    # The region's own strokes, grown by the rim, are only needed inside the crop; they are found in a window one
    # rim wider, which holds every stroke pixel that can grow into the crop, instead of in the whole image.
    wy0, wx0 = max(0, y0 - RIM_PIXELS), max(0, x0 - RIM_PIXELS)
    wy1, wx1 = y1 + RIM_PIXELS, x1 + RIM_PIXELS
    own = owned(labels[wy0:wy1, wx0:wx1], region)
    if faint is not None:
        own |= faint[wy0:wy1, wx0:wx1].astype(bool)
    own = cv2.dilate(own.astype(np.uint8), np.ones((2 * RIM_PIXELS + 1,) * 2, np.uint8))
    crop = ink[y0:y1, x0:x1] * own[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
    if faint is not None:
        crop = lifted(crop, faint[y0:y1, x0:x1].astype(bool))
    ys, xs = np.nonzero(crop > RIM_LEVEL)
    if len(ys) == 0:
        return crop
    return crop[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def owned(labels: np.ndarray, region: Region) -> np.ndarray:
    """Where ``labels`` (a label image, or a window of one) holds the region's own strokes."""
    return (labels == region.labels[0]) if len(region.labels) == 1 else np.isin(labels, region.labels)


def faint_ink(ink: np.ndarray, labels: np.ndarray, areas: np.ndarray, region: Region) -> np.ndarray | None:
    """A side of a digit written or scanned fainter than the rest (uint8 mask, the whole image's shape), or None.

    Strokes are found at half coverage, and a side much fainter than the others stays under it, beyond their rim:
    left out of the crop, a 0 becomes a C (docs/handwriting.md, 'A faint side kept, and lifted to a stroke's
    coverage'). Kept by hysteresis: ink above ``FAINT_LEVEL`` joined to the region's strokes and to no other digit's.
    Of that, only what is no soft edge of a stroke (more than a stroke width from one) and stands out as a stroke
    of its own (a white top-hat narrower than ``FAINT_WIDTHS`` stroke widths) is added: a blurred halo, paper
    noise and uneven light joined to the strokes are left out as before. A faint side belongs to its digit, so it is
    looked for within the digit's own size around its box, not over the whole page: every reading pays for it.
    ``areas``: every stroke label's area, as ``components`` counted them.
    """
    grow = max(region.width, region.height)
    y0, y1 = max(0, region.y - grow), min(ink.shape[0], region.bottom + grow)
    x0, x1 = max(0, region.x - grow), min(ink.shape[1], region.right + grow)
    window, window_labels = ink[y0:y1, x0:x1], labels[y0:y1, x0:x1]
    own = owned(window_labels, region)
    width = max(1, int(np.ceil(stroke_width(own))))
    above = window > FAINT_LEVEL
    # The usual case, nothing above the faint level beyond the strokes' soft edge, is told first by a square that
    # fits inside the disk (fast, as a disk of this size is not).
    inside, strokes = 2 * int(width / np.sqrt(2)) + 1, own.astype(np.uint8)
    if not (above & (cv2.dilate(strokes, np.ones((inside, inside), np.uint8)) == 0)).any():
        return None
    near = cv2.dilate(strokes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1,) * 2))
    beyond = above & (near == 0)
    if not beyond.any():
        return None
    _, pieces = cv2.connectedComponents(above.astype(np.uint8), connectivity=8)
    touching = np.unique(pieces[own])
    # Specks (strokes too small to keep) may lie inside the faint side itself; another digit's strokes may not.
    large = np.flatnonzero(areas >= 0.1 * areas[region.labels].max())
    others = np.unique(pieces[(window_labels > 0) & ~own & np.isin(window_labels, large)])
    kept = np.setdiff1d(touching[touching > 0], others)
    if len(kept) == 0:
        return None
    candidates = np.isin(pieces, kept) & beyond
    if not candidates.any():
        return None
    side = max(3, int(np.ceil(FAINT_WIDTHS * width)) | 1)
    # The top-hat at a pixel sees the ink within a kernel's width of it: worked out around the candidates only.
    cx, cy, cw, ch = cv2.boundingRect(candidates.astype(np.uint8))
    ty0, tx0 = max(0, cy - side), max(0, cx - side)
    ty1, tx1 = min(window.shape[0], cy + ch + side), min(window.shape[1], cx + cw + side)
    tophat = np.zeros_like(window)
    tophat[ty0:ty1, tx0:tx1] = cv2.morphologyEx(window[ty0:ty1, tx0:tx1], cv2.MORPH_TOPHAT,
                                                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    faint = candidates & (tophat > FAINT_LEVEL)
    if not faint.any():
        return None
    mask = np.zeros(ink.shape, np.uint8)
    mask[y0:y1, x0:x1] = faint
    return mask


def lifted(crop: np.ndarray, faint: np.ndarray) -> np.ndarray:
    """The crop with its faint ink (``faint``) scaled by its own local peak, so a side written lighter reaches a
    stroke's coverage: the marker thinning of ``even_strokes`` keeps only ink above half coverage."""
    radius = max(1, int(np.ceil(stroke_width(crop))))
    peak = cv2.dilate(crop, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    out = crop.copy()
    out[faint] = np.minimum(crop[faint] / np.maximum(peak[faint], FAINT_LEVEL), 1.0)
    return out
