"""A person's image -> the 28x28 form MNIST digits have. The one preprocessing path for the CLI, the API and the web.

MNIST was made by fitting each digit into a 20x20 box keeping its aspect ratio (anti-aliased), then placing it in a
28x28 field so its centre of mass lies at the centre, bright ink on a dark background. A photo of a digit on paper
is none of that, so every image goes through the same stages, in this order, each in a module of its own:

    decode          bytes or a path -> upright pixels (size checked before decoding, EXIF         decode.py
                    orientation; plain PNGs decoded by libspng, everything else by Pillow)
    to_gray         any mode (alpha, palette, 16-bit, CMYK, colour) -> float gray in [0, 1]       decode.py
    shrink          to a fixed working size, so every later stage costs the same on a big photo   here
    find_paper      the paper, given back around a tight crop whose ink runs into the edge,       paper.py
                    and the ink's polarity: dark on light, or light on dark (overridable)
    ink_map         flip to bright ink, remove the background and uneven light, denoise ->        ink.py
                    ink coverage in [0, 1]; a hairline is found before the denoising breaks it
    find_glyphs     connected strokes; merge the pieces of a broken digit, split touching         glyphs.py
                    digits, left to right; each one's ink cropped with its rim and faint sides
    to_mnist        strokes brought into MNIST's range of widths (even_strokes), fitted into      mnist_form.py
                    20x20 keeping the aspect ratio, centre of mass to the centre of 28x28

``read`` runs shrink to to_mnist on gray pixels; ``prepare(source)`` decodes, reads, and reads ink that is small in
a large picture a second time, from the full-size pixels around it. It returns the 28x28 images with their boxes in
the original picture, or a reason why there is nothing to read (a blank page, noise). None of these modules
imports torch, so the ONNX deployment path runs without it.

    prepared = prepare("photo.jpg", multi=True)
    images = np.stack([g.image for g in prepared.glyphs])    # (N, 28, 28): standardised by engine.normalise
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

import cv2
import numpy as np

from digitlab.recognition.decode import WORK_SIDE, decode, to_gray
from digitlab.recognition.facts import MAX_PIXELS, POLARITIES
from digitlab.recognition.glyphs import Region, find_glyphs, region_ink, single_digit_doubt
from digitlab.recognition.ink import ink_map
from digitlab.recognition.mnist_form import to_mnist
from digitlab.recognition.paper import Paper, find_paper


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


def prepare(source, polarity: str = "auto", multi: bool = False, max_pixels: int = MAX_PIXELS,
            steps: bool = False) -> Prepared:
    """Run every stage on one image: the MNIST-form glyphs with their boxes, or a reason why there are none.

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
    """Every stage after decoding, on gray pixels: the glyphs, with boxes in those pixels, and the box all the ink
    lies in (or None). ``steps``, when given, receives the images between them (see STEPS)."""
    work, to_gray_pixels = shrink(gray)
    paper = find_paper(work, polarity)
    ink, ink_notes = paper.ink if paper.ink is not None else ink_map(paper.gray, paper.polarity)
    notes = paper.notes | ink_notes
    if steps is not None:
        steps |= {"gray": paper.gray, "ink": ink}
    size = (gray.shape[1], gray.shape[0])
    unclear = no_clear_ink(ink, notes, polarity)
    if unclear:
        return Prepared([], paper.polarity, size, unclear, notes), None
    labels, areas, regions = find_glyphs(ink, multi)
    if not regions:  # ink, but every piece of it a speck smaller than any stroke
        return Prepared([], paper.polarity, size, "no clear strokes: the ink is only specks too small to be a digit",
                        notes), None
    ink_box = in_gray(reduce(Region.merged, regions), paper, to_gray_pixels)
    if not multi:
        doubt = single_digit_doubt(regions[0], areas, ink)
        if doubt:
            return Prepared([], paper.polarity, size, doubt, notes), ink_box
    glyphs = [Glyph(to_mnist(region_ink(ink, labels, areas, region), steps if index == 0 else None),
                    in_gray(region, paper, to_gray_pixels)) for index, region in enumerate(regions)]
    return Prepared(glyphs, paper.polarity, size, None, notes), ink_box


def no_clear_ink(ink: np.ndarray, notes: dict, polarity: str) -> str | None:
    """Why an ink map holds nothing to read, or None: no ink at all, or (polarity detected) as much standing out
    darker as lighter. ``notes``: the paper's and the ink map's measurements."""
    if not ink.any():
        return ("blank image: no ink stands out from the background" if notes["noise"] < 0.04 else
                "no clear strokes: nothing stands out from the noise")
    if polarity == "auto" and notes["one_sidedness"] < 0.5:
        return ("no clear ink: as much stands out darker as lighter (noise or a photo, not a digit on a plain "
                "background)")
    return None


def in_gray(region: Region, paper: Paper, to_gray_pixels: float) -> tuple[int, int, int, int]:
    """A region's box (x, y, width, height) in the gray pixels ``read`` was given: the paper given back taken off,
    and the working size scaled back by ``to_gray_pixels``."""
    margin = paper.margin
    x0, y0 = max(0, region.x - margin), max(0, region.y - margin)
    x1 = min(paper.gray.shape[1] - 2 * margin, region.right - margin)
    y1 = min(paper.gray.shape[0] - 2 * margin, region.bottom - margin)
    return tuple(int(round(v * to_gray_pixels)) for v in (x0, y0, x1 - x0, y1 - y0))


# --- the working size ---------------------------------------------------------------------------------------------

AREA_ABOVE = 1.25            # shrinking by less (a 280 px canvas) is bilinear: samples at most 1.25 px apart miss no
                             # stroke, and costs far less than OpenCV's area averaging at such ratios
                             # (measured: docs/serving.md, 'Where a request's CPU goes')
LONGEST_WORK = 4             # the working image's longer side is at most this many times WORK_SIDE: by area alone, a
                             # 1-pixel-wide strip would be stretched to a 25,000 px line whose stroke widening costs
                             # minutes


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


# --- reading small ink again at full size -------------------------------------------------------------------------

SMALL_INK = 0.3              # ink within this fraction of the working image's height and width is read again ...
ZOOM_ABOVE = 1.5             # ... from the full-size pixels, when they hold this many times more


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
