"""A person's image -> the 28x28 form MNIST digits have. The one preprocessing path for the CLI, the API and the web.

MNIST was made by fitting each digit into a 20x20 box keeping its aspect ratio (anti-aliased), then placing it in a
28x28 field so its centre of mass lies at the centre, bright ink on a dark background. A photo of a digit on paper
is none of that, so every image goes through the same steps, in this order:

    decode          bytes or a path -> upright pixels (size checked before decoding, EXIF orientation;
                    plain PNGs decoded by libspng into an array, everything else by Pillow)
    to_gray         any mode (alpha, palette, 16-bit, CMYK, colour) -> float gray (H, W) in [0, 1]
    shrink          to a fixed working size, so every later step costs the same on a 4,000 px photo
    edge_ink        a tight crop, its ink running into the edge, gets a margin of its paper back (with_margin)
    find_polarity   dark ink on light paper, or light on dark (overridable)
    ink_map         flip to bright ink, remove the background and uneven light, denoise -> ink coverage in [0, 1];
                    a hairline is found before the denoising breaks it
    find_glyphs     connected components; merge the pieces of one broken digit, split touching digits, left to right
    to_mnist        crop, bring the strokes into MNIST's range of widths (even_strokes), fit into 20x20 keeping the
                    aspect ratio, centre of mass to the centre of 28x28

Ink that is small in a large picture is read a second time, from the full-size pixels around it (``prepare``).

``prepare(source)`` runs them all and returns the 28x28 images with their boxes in the original picture, or a
reason why there is nothing to read (a blank page, noise); ``engine.normalise`` applies a checkpoint's mean and std.
This module imports no torch, so the ONNX deployment path runs without it.

    prepared = prepare("photo.jpg", multi=True)
    batch = normalise(np.stack([g.image for g in prepared.glyphs]), mean=0.1307, std=0.3081)  # (N, 1, 28, 28)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from digitlab.recognition.decode import MAX_PIXELS, WORK_SIDE, decode, to_gray

POLARITIES = ("auto", "dark-on-light", "light-on-dark")
AREA_ABOVE = 1.25            # shrinking by less (a 280 px canvas) is bilinear: samples at most 1.25 px apart miss no
                             # stroke, and costs far less than OpenCV's area averaging at such ratios
                             # (measured: docs/serving.md, 'Where a request's CPU goes')
LONGEST_WORK = 4             # the working image's longer side is at most this many times WORK_SIDE: by area alone, a
                             # 1-pixel-wide strip would be stretched to a 25,000 px line whose stroke widening costs
                             # minutes
BACKGROUND_SIDE = 64         # the background (paper, uneven light) is estimated at this coarser size
MIN_CONTRAST = 0.06          # ink must differ from the paper by 6% of full brightness ...
MIN_INK_PIXELS = 12          # ... over at least this many working pixels, or the image counts as blank
INK_LEVEL = 0.5              # a pixel belongs to a stroke where its coverage exceeds this ...
RIM_LEVEL, RIM_PIXELS = 0.1, 4   # ... and its faint rim, within 4 working pixels, down to this
FAINT_LEVEL = 0.3            # ... and a side written fainter, where it is joined to the strokes, down to this
FAINT_WIDTHS = 3             # a faint stroke is narrower than this many stroke widths (shading and uneven light wider)
BOX, FIELD = 20, 28          # MNIST: fit into 20x20, centre in 28x28
TWO_TONES = 0.25             # a border whose two tones lie this far apart (and beyond their spread) holds ink
ONE_SIDED_GIVEN_BACK = 0.8  # ... and with paper given back, all but a tenth of what stands out must be ink
TONES_TIED = 0.02            # either tone given back makes the ink this nearly as one-sided: the border decides
PAPER_SIDE = 0.75            # a tone given back that holds this much of the border is judged with the border's range
MARGIN = 0.15                # paper given back around a tight crop, as a fraction of its longer side
SMALL_INK = 0.3              # ink within this fraction of the working image's height and width is read again ...
ZOOM_ABOVE = 1.5             # ... from the full-size pixels, when they hold this many times more
ONE_PIECE_WIDEST = 3.0       # one stroke at most this many times wider than tall may be one digit written flat
HAIRLINE = 2.5               # strokes thinner than this many working pixels are widened before they are cut apart
STROKE_WIDTHS = (1.6, 2.4, 3.7)   # MNIST's stroke width in its 28x28 field: 5th percentile, median, 95th
PEN_WIDTH_RANK = 25          # a marker's width: this percentile of twice the distance to the paper along its strokes


@dataclass
class Glyph:
    """One digit ready for a model: the MNIST-form image and where it was found."""

    image: np.ndarray                 # (28, 28) float32 in [0, 1], bright ink on dark
    box: tuple[int, int, int, int]    # x, y, width, height in pixels of the upright original image


@dataclass
class Prepared:
    """What ``prepare`` found in one image: glyphs left to right, or none and the reason."""

    glyphs: list[Glyph]
    polarity: str                     # "dark-on-light" or "light-on-dark", as detected or as given
    size: tuple[int, int]             # width, height of the upright original image
    reason: str | None = None         # why there are no glyphs
    notes: dict = field(default_factory=dict)   # measurements behind the decisions, for --explain and tests
    steps: dict | None = None         # the image between the steps, when asked for: see STEPS


# What ``prepare(..., steps=True)`` keeps of the first digit's way through the steps, for a page or a lesson to show
# (float images in [0, 1]): the working gray image whose polarity was judged, the ink found in it (bright on dark),
# the digit's crop, and the crop fitted into the 20x20 box; the 28x28 image itself is the glyph's. ``centre`` is
# the fitted digit's centre of mass (x, y) within it and where its top-left corner was put in 28x28 (left, top).
STEPS = ("gray", "ink", "crop", "fit", "centre")


# --- 3. working size ----------------------------------------------------------------------------------------------

def shrink(gray: np.ndarray, work_side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """Resize to the area of a ``work_side`` square, keeping the aspect ratio (area averaging when shrinking by more
    than ``AREA_ABOVE``, which also averages out sensor noise). By area, not longest side, so a digit on a long thin
    strip keeps enough pixels; but no side longer than ``LONGEST_WORK`` squares, so that every later step's cost is
    bounded whatever the image's shape. Returns the image and the factor from working pixels to the input's pixels."""
    height, width = gray.shape
    factor = max((height * width) ** 0.5 / work_side, max(height, width) / (LONGEST_WORK * work_side))
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    interpolation = cv2.INTER_AREA if factor > AREA_ABOVE else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=interpolation), factor


# --- 4. paper and polarity ----------------------------------------------------------------------------------------

def border(gray: np.ndarray) -> np.ndarray:
    """The pixels of a ring along the image's edge, 4% of its shorter side wide: nearly always paper."""
    height, width = gray.shape
    ring = max(1, round(0.04 * min(height, width)))
    return np.concatenate([gray[:ring].ravel(), gray[-ring:].ravel(), gray[:, :ring].ravel(),
                           gray[:, -ring:].ravel()])


def edge_ink(gray: np.ndarray, spread: float = 3.0) -> float | None:
    """The paper's brightness when ink runs into the image's edge (a digit cropped tightly from a form or a scan),
    or None when the border is all paper.

    Such a border holds two tones far apart, each narrow: the paper, and the ink where strokes cross the edge. Uneven
    light spreads a plain border over a range too, but evenly, with no gap between two narrow tones; noise and a
    photo's texture put the tones close. The paper is the tone that holds more of the border.
    ``spread``: how far apart, in the sum of their interquartile ranges, the two tones' medians must lie."""
    ring = border(gray)
    on_dark_side, split = otsu(ring)
    dark, light = ring[on_dark_side], ring[~on_dark_side]
    if len(dark) == 0 or len(light) == 0:
        return None
    (d25, d50, d75), (l25, l50, l75) = percentiles(dark, [25, 50, 75]), percentiles(light, [25, 50, 75])
    gap = l50 - d50
    if gap < TWO_TONES or gap < spread * ((d75 - d25) + (l75 - l25)):
        return None
    paper = float(d50 if len(dark) >= len(light) else l50)
    # Strokes cross the edge in runs no longer than a side; the dark half of a page lit from one side runs along a
    # whole side and round two corners.
    outline = np.concatenate([gray[0], gray[1:, -1], gray[-1, -2::-1], gray[-2:0:-1, 0]])
    ink = (outline <= split) if paper == float(l50) else (outline > split)
    if ink.all():
        return None
    start = int(np.argmin(ink))  # begin the walk round the edge on paper, so no run is split in two
    ink = np.roll(ink, -start)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ink.astype(np.int8), [0]])))
    longest = int((edges[1::2] - edges[::2]).max(initial=0))
    return paper if longest <= max(gray.shape) else None


def otsu(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Which of ``values`` (brightness in [0, 1]) lie on the dark side of Otsu's threshold, and the threshold."""
    levels = np.clip(values * 255, 0, 255).astype(np.uint8)
    split, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return levels <= split, split / 255


def two_tones(gray: np.ndarray) -> tuple[float, float]:
    """The median brightness of the two tones Otsu's threshold splits an image into, the commoner first."""
    dark, _ = otsu(gray)
    tones = [float(np.median(gray[dark])) if dark.any() else float(gray.min()),
             float(np.median(gray[~dark])) if not dark.all() else float(gray.max())]
    return tuple(tones) if np.count_nonzero(dark) * 2 >= dark.size else (tones[1], tones[0])


def common_tone(gray: np.ndarray) -> float:
    """The brightness of the tone that covers more of the image: the paper, when ink covers less than half the
    picture, as it does in nearly every tight crop."""
    return two_tones(gray)[0]


def with_margin(gray: np.ndarray, paper: float) -> tuple[np.ndarray, int]:
    """The image with a margin of paper around it, and the margin's width: a tight crop given back the paper that
    was cut away, so the later steps see what they see in every other picture - a digit with paper all round."""
    margin = max(2, round(MARGIN * max(gray.shape)))
    return cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=paper), margin


def paper_given_back(gray: np.ndarray, tones, at_least: float) -> tuple[np.ndarray, int, str, float] | None:
    """The image with a margin of whichever of ``tones`` the ink then stands out from most one-sidedly, with the
    margin, polarity and one-sidedness, or None if even that is below ``at_least``: the paper is kept given back
    only where it turns what stood out into ink of one side."""
    ring = border(gray)
    on_dark_side, split = otsu(ring)
    judged = []
    for tone in tones:
        padded, margin = with_margin(gray, tone)
        # The margin is one flat tone, but a page lit unevenly spans a range of brightness, and beyond the margin's
        # tone its own light would count as ink of the other side (then the ink's tone, around which all the page
        # stands out lighter, wins). A tone that holds most of the border is the paper there, and the range it
        # spans along the border is the paper's under its light; a tone holding less may be a blurred stroke's
        # ramp, which is no paper.
        side = ring[on_dark_side] if tone <= split else ring[~on_dark_side]
        paper = np.append(side, tone) if len(side) >= PAPER_SIDE * len(ring) else None
        judged.append((*find_polarity(padded, paper), padded, margin, tone))
    best = max(trial[1] for trial in judged)
    # A bold stroke stretched to fill its image covers as much of it as the paper does, and given either tone back
    # the other stands out plainly one-sided; then the paper is the tone that holds more of the border.
    edge = float(np.median(border(gray)))
    polarity, one_sidedness, padded, margin, _ = min(
        (trial for trial in judged if trial[1] >= best - TONES_TIED), key=lambda trial: abs(trial[4] - edge))
    return (padded, margin, polarity, one_sidedness) if one_sidedness >= at_least else None


def find_polarity(gray: np.ndarray, paper: np.ndarray | None = None) -> tuple[str, float]:
    """Which way the ink differs from the paper, and how one-sided that is (1: all ink one way, 0: like noise, or
    nothing stands out at all).

    The image's border is nearly always paper, and under smooth uneven light the paper inside stays within the
    brightness range its border spans. Ink lies outside that range on one side only; noise, JPEG ringing and the
    texture of a photo lie on both. ``paper``: pixels known to be paper, whose range is taken instead of the
    border's (a margin given back is one tone, where the page it stands for spans a range).
    """
    if paper is None:
        paper = border(gray)
    low, high = percentiles(paper, [2, 98])
    darker = _excess(float(low) - 0.03 - gray)  # float32 differences, summed in float64
    lighter = _excess(gray - (float(high) + 0.03))
    total = darker + lighter
    if total <= 0:  # nothing beyond the paper's range either way: a blank page, which is not noise
        return "dark-on-light" if np.median(paper) >= 0.5 else "light-on-dark", 0.0
    polarity = "dark-on-light" if darker >= lighter else "light-on-dark"
    return polarity, float(abs(darker - lighter) / total)


def _excess(difference: np.ndarray) -> float:
    """The sum of the positive values: how far, in all, pixels lie beyond a limit (most lie within it)."""
    return float(difference[difference > 0].sum(dtype=np.float64))


# --- 5. ink -------------------------------------------------------------------------------------------------------

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


# --- 6. segmentation ----------------------------------------------------------------------------------------------

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


# --- 7. MNIST form ------------------------------------------------------------------------------------------------

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


def lifted(crop: np.ndarray, faint: np.ndarray) -> np.ndarray:
    """The crop with its faint ink (``faint``) scaled by its own local peak, so a side written lighter reaches a
    stroke's coverage: the marker thinning of ``even_strokes`` keeps only ink above half coverage."""
    radius = max(1, int(np.ceil(stroke_width(crop))))
    peak = cv2.dilate(crop, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    out = crop.copy()
    out[faint] = np.minimum(crop[faint] / np.maximum(peak[faint], FAINT_LEVEL), 1.0)
    return out


def faint_ink(ink: np.ndarray, labels: np.ndarray, areas: np.ndarray, region: Region) -> np.ndarray | None:
    """A side of a digit written or scanned fainter than the rest (uint8 mask, the whole image's shape), or None.

    Strokes are found at half coverage, and a side much fainter than the others stays under it, beyond their rim:
    left out of the crop, a 0 becomes a C (docs/handwriting.md, 'Preprocessing fixes of 2026-12-03, fourth
    round'). Kept by hysteresis: ink above ``FAINT_LEVEL`` joined to the region's strokes and to no other digit's.
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


def stroke_width(ink: np.ndarray) -> float:
    """The mean width of the strokes, in pixels: twice their area over their outline's length (a stroke of width w
    and length l has area w * l and an outline 2 * l long)."""
    mask = (ink > INK_LEVEL if ink.dtype != bool else ink).astype(np.uint8)
    outlines, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    length = sum(cv2.arcLength(outline, True) for outline in outlines)
    return 2 * float(np.count_nonzero(mask)) / max(length, 1.0)


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
    # 'Preprocessing fixes of 2026-12-03, second round'.
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
    # turn into another digit's outline (docs/handwriting.md, 'Preprocessing fixes of 2026-12-03, third round').
    ramp = max(edge_width(crop, mask[1:-1, 1:-1]), 1 / scale)
    thinned = np.minimum(crop, np.clip((inside - radius) / ramp + 0.5, 0.0, 1.0)).astype(np.float32)
    if np.count_nonzero(thinned > INK_LEVEL) < 0.2 * np.count_nonzero(crop > INK_LEVEL):
        return crop
    ys, xs = np.nonzero(thinned > RIM_LEVEL)
    return thinned[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def edge_width(ink: np.ndarray, mask: np.ndarray) -> float:
    """How many pixels the ink's edge takes to rise from paper to a stroke's full coverage, on average along its
    outline (``mask``: the ink above half coverage). Between a tenth and nine tenths it rises over four fifths of
    the whole rise, if the edge is a straight ramp; a hard edge gives under a pixel, a blurred scan's as much as its
    stroke is wide."""
    outlines, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    length = sum(cv2.arcLength(outline, True) for outline in outlines)
    rising = np.count_nonzero((ink > RIM_LEVEL) & (ink < 1 - RIM_LEVEL))
    return rising / max(length, 1.0) / (1 - 2 * RIM_LEVEL)


def _radius(width: float, scale: float) -> int:
    """How many crop pixels a side to grow (thin) strokes ``width`` wide once fitted to bring them to MNIST's median.
    Growing (thinning) by r pixels a side also grows (shrinks) the crop by 2r, and with it the fit's scale: r solves
    (w + 2r) * BOX / (side + 2r) = typical for the crop's stroke width w and longer side."""
    typical = STROKE_WIDTHS[1]
    return round(abs(typical / scale - width / scale) / (2 * (1 - typical / BOX)))


def to_mnist(crop: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """A digit's ink (h, w) -> (28, 28) float32: fitted into 20x20 keeping its aspect, centre of mass at the centre.

    MNIST shifted whole pixels, so its centres of mass sit within half a pixel of (14, 14); so do ours. ``steps``,
    when given, receives the crop, the fitted digit and where its centre of mass put it (see STEPS).
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


# --- all steps ----------------------------------------------------------------------------------------------------

def prepare(source, polarity: str = "auto", multi: bool = False, max_pixels: int = MAX_PIXELS,
            steps: bool = False) -> Prepared:
    """Run every step on one image: the MNIST-form glyphs with their boxes, or a reason why there are none.

    A digit small on a large page is found at the working size, then read again from the full-size pixels around
    it, so a digit a few percent of a photo's height keeps its strokes. Raises ImageError only when the input
    cannot be read as an image; a blank page or noise is a normal answer (``reason`` set, no glyphs). With
    ``steps`` the result keeps the images between the steps (``Prepared.steps``, see STEPS).
    """
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, not {polarity!r}")
    pixels, decode_scale = decode(source, max_pixels)
    gray = to_gray(pixels)
    del pixels  # the decoded colours are not needed again: a large picture's memory is its gray alone from here
    size = (round(gray.shape[1] * decode_scale), round(gray.shape[0] * decode_scale))
    recorded = {} if steps else None
    prepared, ink_box = read(gray, polarity, multi, recorded)
    zoom = _zoom_window(gray.shape, ink_box, decode_scale)
    if zoom is not None and prepared.glyphs:
        if decode_scale > 1:  # a JPEG decoded at reduced size: decoded again, whole
            reduced = decode_scale
            gray = None  # the reduced gray goes before the whole one is made
            pixels, decode_scale = decode(source, max_pixels, work_side=max(size))
            gray = to_gray(pixels)
            del pixels
            # The same window in the whole decode's pixels; not tested again, as rounding the box to the larger
            # pixels could put a digit on the bound of SMALL_INK on its other side.
            zoom = _scaled_window(zoom, reduced / decode_scale, gray.shape)
        x0, y0, x1, y1 = zoom
        closer_steps = {} if steps else None
        closer, _ = read(gray[y0:y1, x0:x1], prepared.polarity, multi, closer_steps)
        if closer.glyphs:
            recorded = closer_steps
            closer.glyphs = [Glyph(g.image, (g.box[0] + x0, g.box[1] + y0, g.box[2], g.box[3]))
                             for g in closer.glyphs]
            closer.notes = prepared.notes | {"zoomed": list(zoom)}
            prepared = closer
    for glyph in prepared.glyphs:
        glyph.box = tuple(int(round(v * decode_scale)) for v in glyph.box)
    prepared.size = size
    prepared.steps = recorded
    return prepared


def read(gray: np.ndarray, polarity: str, multi: bool,
         steps: dict | None = None) -> tuple[Prepared, tuple[int, int, int, int] | None]:
    """Steps 3-7 on gray pixels: the glyphs, with boxes in those pixels, and the box all the ink lies in (or None).
    ``steps``, when given, receives the images between them (see STEPS)."""
    work, to_gray_pixels = shrink(gray)
    detected, one_sidedness = find_polarity(work)
    paper = edge_ink(work)
    if paper is None and one_sidedness < ONE_SIDED_GIVEN_BACK:
        # Nothing or both sides stand out from the border's range, and the border may hold ink: blurred ink (two
        # tones with a wider spread), or so much that the border looks like noise (then the commoner tone is the
        # paper). Not where the ink is plainly one-sided: a page lit unevenly spans a range along its border that
        # can pass for two blurred tones.
        paper = edge_ink(work, spread=1.5)
        if paper is None and 0 < one_sidedness < 0.5:
            paper = common_tone(work)
    margin = 0
    given_back = None if paper is None else paper_given_back(
        work, [paper], at_least=max(ONE_SIDED_GIVEN_BACK, min(one_sidedness, 0.95)))
    if paper is None and one_sidedness >= ONE_SIDED_GIVEN_BACK:
        # A bold blurred digit that fills its image puts its strokes' soft edges into the border, so the border's
        # range spans the ink and the paper's own speckle alone passes for ink of the other side, one-sidedly.
        # Paper given back is kept only where it turns the ink round to the other side that plainly.
        blurred = edge_ink(work, spread=1.5)
        turned = None if blurred is None else paper_given_back(work, [blurred], at_least=0.95)
        if turned is not None and turned[2] != detected:
            given_back = turned
    if given_back is not None:
        work, margin, detected, one_sidedness = given_back
    chosen = detected if polarity == "auto" else polarity
    ink, ink_notes = ink_map(work, chosen)
    if margin == 0 and one_sidedness == 0 and ink.any():
        # Ink stands out from its surroundings, yet nothing lies beyond the border's range: the border spans the
        # ink's tones too (a blurred digit that fills its image). Either of the image's two tones may be the paper
        # (a bold digit can cover more than half of it): the one around which the ink stands out on one side is.
        given_back = paper_given_back(work, two_tones(work), at_least=ONE_SIDED_GIVEN_BACK)
        if given_back is not None:
            work, margin, detected, one_sidedness = given_back
            chosen = detected if polarity == "auto" else polarity
            ink, ink_notes = ink_map(work, chosen)
    notes = {"one_sidedness": one_sidedness, "detected_polarity": detected, "paper_given_back": margin > 0}
    notes |= ink_notes
    if steps is not None:
        steps |= {"gray": work, "ink": ink}
    size = (gray.shape[1], gray.shape[0])
    if not ink.any():
        reason = ("blank image: no ink stands out from the background" if notes["noise"] < 0.04 else
                  "no clear strokes: nothing stands out from the noise")
        return Prepared([], chosen, size, reason, notes), None
    if polarity == "auto" and one_sidedness < 0.5:
        return Prepared([], chosen, size, "no clear ink: as much stands out darker as lighter (noise or a "
                                          "photo, not a digit on a plain background)", notes), None

    def in_gray(x: int, y: int, width: int, height: int) -> tuple[int, int, int, int]:
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1 = min(work.shape[1] - 2 * margin, x + width - margin)
        y1 = min(work.shape[0] - 2 * margin, y + height - margin)
        return tuple(int(round(v * to_gray_pixels)) for v in (x0, y0, x1 - x0, y1 - y0))

    labels, areas, regions = find_glyphs(ink, multi)
    if not regions:  # ink, but every piece of it a speck smaller than any stroke
        return Prepared([], chosen, size, "no clear strokes: the ink is only specks too small to be a digit",
                        notes), None
    all_ink = regions[0]
    for region in regions[1:]:
        all_ink = all_ink.merged(region)
    ink_box = in_gray(all_ink.x, all_ink.y, all_ink.width, all_ink.height)
    if not multi:
        doubt = single_digit_doubt(regions[0], areas, ink)
        if doubt:
            return Prepared([], chosen, size, doubt, notes), ink_box
    glyphs = [Glyph(to_mnist(region_ink(ink, labels, areas, region), steps if index == 0 else None),
                    in_gray(region.x, region.y, region.width, region.height)) for index, region in enumerate(regions)]
    return Prepared(glyphs, chosen, size, None, notes), ink_box


def _zoom_window(shape: tuple[int, int], ink_box, decode_scale: float = 1.0) -> tuple[int, int, int, int] | None:
    """Where to read again at full size (x0, y0, x1, y1): around ink that is small in a picture whose pixels hold
    far more detail than the working size, or None. ``decode_scale``: how many of the file's pixels one of
    ``shape``'s stands for; a JPEG decoded at reduced size holds that much more detail in the file, and a small
    digit on it is a blur of a few pixels until it is decoded again whole."""
    if ink_box is None:
        return None
    height, width = shape
    if (height * width) ** 0.5 * decode_scale < ZOOM_ABOVE * WORK_SIDE:
        return None
    x, y, w, h = ink_box
    if w > SMALL_INK * width or h > SMALL_INK * height:
        return None
    reach = max(w, h)  # paper around the ink, as much again as the ink's size
    return max(0, x - reach), max(0, y - reach), min(width, x + w + reach), min(height, y + h + reach)


def _scaled_window(window: tuple[int, int, int, int], scale: float,
                   shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A window (x0, y0, x1, y1) in pixels ``scale`` times larger, kept within ``shape``."""
    height, width = shape
    x0, y0, x1, y1 = (round(v * scale) for v in window)
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)
