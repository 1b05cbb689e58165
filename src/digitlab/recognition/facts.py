"""What reading an image takes and promises, in plain Python: the image formats opened, the largest image decoded,
the polarities of ink, and the confidence thresholds.

The modules that read images (decode, preprocess, predict) take these from here, and so does everything that checks
a request against them before an image is read: the command line's options, ``ServeSettings``, and the server's
HTTP process, which hands images to worker processes and so never loads numpy, OpenCV or Pillow itself
(tests/test_layout.py checks it). This module imports nothing of them.

    check_threshold(0.9)                    # 0.9, or a ValueError that says why not
    [f.media_type for f in IMAGE_FORMATS]   # what the page's file picker accepts
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

MAX_PIXELS = 64_000_000      # a 64-megapixel photo is fine; a 30,000 x 30,000 PNG of 100 kB is a decompression bomb


class ImageFormat(NamedTuple):
    pillow: str                  # Pillow's name for it, as Image.open(formats=) takes it
    name: str                    # as people write it
    media_type: str
    suffixes: tuple[str, ...]    # the file name endings it comes with, lower case


# The formats docs/usage.md promises, and the only ones opened: Pillow knows dozens more (TGA, PCX, SPIDER, EPS - for
# which it would run Ghostscript on PostScript from a stranger), each one more parser facing untrusted bytes. Every
# other list of image formats is read from this one: the file names `digitlab predict`, training on folders and Ray
# take as images, and the page's file picker and its messages (tests/recognition/test_decode.py checks each).
IMAGE_FORMATS = (
    ImageFormat("PNG", "PNG", "image/png", (".png",)),
    ImageFormat("JPEG", "JPEG", "image/jpeg", (".jpg", ".jpeg")),
    ImageFormat("BMP", "BMP", "image/bmp", (".bmp",)),
    ImageFormat("GIF", "GIF", "image/gif", (".gif",)),
    ImageFormat("TIFF", "TIFF", "image/tiff", (".tif", ".tiff")),
    ImageFormat("WEBP", "WebP", "image/webp", (".webp",)),
)
SUFFIXES = tuple(suffix for image_format in IMAGE_FORMATS for suffix in image_format.suffixes)

# Which way the ink differs from the paper: detected, or as the caller says (preprocess.find_paper).
POLARITIES = ("auto", "dark-on-light", "light-on-dark")

# A calibrated model answers when its best digit is at least this likely to be right: a bar that itself refuses at
# most 1 % of the real digits by every writer the project can test (beyond those no bar answers: nothing found, or
# "not a digit"), read on the choosing half of the other-writer benchmark at the bundled model's temperature
# (docs/handwriting.md, "The default threshold", says how it was picked in that range). Letters are turned away
# mostly by the "not a digit" output; a caller who expects letters can ask for a higher bar. A model without a fitted
# temperature keeps the older bar: label smoothing caps its top probability near 0.9, so it cannot be read as a
# chance.
DEFAULT_THRESHOLD = 0.45
UNCALIBRATED_THRESHOLD = 0.7


def default_threshold(metadata: dict) -> float:
    """The threshold a model is read with unless one is asked for: the one its calibration chose
    (``calibrate.refusal_bar``), else DEFAULT_THRESHOLD if it is calibrated at all."""
    calibration = metadata.get("calibration") or {}
    if not calibration.get("temperature"):
        return UNCALIBRATED_THRESHOLD
    return float(calibration.get("threshold", DEFAULT_THRESHOLD))


def check_threshold(threshold) -> float:
    """``threshold`` as a float if it is one a Recognizer takes (a real number from 0 to 1), else a ValueError that
    says why. The one check of a threshold: the Recognizer's options, ServeSettings and the API's query use it."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, not {threshold!r}")  # NaN fails the range too
    return float(threshold)
