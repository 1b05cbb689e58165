"""Real MNIST digits redrawn the way people hand them in: the project's own test data for ``preprocess``.

A tutorial model meets photos and drawings, not 28x28 MNIST crops. This module takes real MNIST test digits and
draws each one again on a large canvas (100-1,000 px) as a person would supply it: dark ink on light paper or light
on dark, off centre, filling 30-85% of the height, with uneven lighting, sensor noise, JPEG compression, coloured
ink and paper and sometimes thick marker strokes. Everything is drawn from a seeded generator, so a benchmark or a
test gets the same images on every run.

    rng = np.random.default_rng(0)
    style = random_style(rng)
    data = render_file(digit28, style)          # PNG or JPEG bytes, as a person's file would be
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# (ink, paper) colour pairs in RGB, the combinations people actually write with.
DARK_ON_LIGHT = [
    ((20, 20, 20), (250, 250, 248)),     # black pen on white paper
    ((25, 40, 150), (245, 240, 225)),    # blue ballpoint on cream paper
    ((70, 70, 75), (235, 235, 235)),     # pencil on grey recycled paper
    ((170, 20, 30), (250, 245, 200)),    # red pen on yellow sticky note
    ((20, 100, 40), (225, 235, 250)),    # green marker on light blue paper
    ((10, 10, 60), (255, 255, 255)),     # navy marker on a white board
]
LIGHT_ON_DARK = [
    ((240, 240, 235), (35, 50, 40)),     # chalk on a green board
    ((250, 250, 250), (15, 15, 20)),     # white on black (a drawing app's dark mode)
    ((250, 230, 90), (20, 30, 70)),      # yellow chalk on a blue board
]


@dataclass(frozen=True)
class Style:
    """How one image is drawn. Sizes are in canvas pixels, strengths in fractions of full brightness."""

    width: int
    height: int
    fill: float                  # digit height / canvas height
    centre: tuple[float, float]  # where the digit's box centre lies, as fractions of (width, height)
    ink: tuple[int, int, int]
    paper: tuple[int, int, int]
    marker: float                # extra stroke radius in MNIST pixels (0 = the writer's own pen)
    lighting: float              # how much darker the dim side of the page is (0 = even light)
    light_angle: float           # direction of the lighting gradient, radians
    noise: float                 # sensor noise, standard deviation in 0-255 units
    jpeg_quality: int | None     # None: saved as PNG

    @property
    def polarity(self) -> str:
        return "dark-on-light" if sum(self.ink) < sum(self.paper) else "light-on-dark"


def random_style(rng: np.random.Generator) -> Style:
    """A plausible way a person might photograph, scan or draw a digit."""
    width, height = (int(v) for v in rng.integers(100, 1001, size=2))
    pairs = DARK_ON_LIGHT if rng.random() < 0.7 else LIGHT_ON_DARK
    ink, paper = pairs[rng.integers(len(pairs))]
    fill = float(rng.uniform(0.30, 0.85))
    return Style(
        width=width, height=height, fill=fill,
        centre=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
        ink=ink, paper=paper,
        marker=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.25 else 0.0,
        lighting=float(rng.uniform(0.0, 0.45)), light_angle=float(rng.uniform(0, 2 * np.pi)),
        noise=float(rng.uniform(0.0, 10.0)),
        jpeg_quality=int(rng.integers(40, 96)) if rng.random() < 0.7 else None,
    )


def ink_box(digit: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the non-zero pixels of a (28, 28) digit."""
    ys, xs = np.nonzero(digit)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def enlarge(digit: np.ndarray, scale: float, marker: float) -> np.ndarray:
    """A (28, 28) uint8 digit cropped to its ink and scaled up by ``scale``: float ink coverage in [0, 1]."""
    x, y, w, h = ink_box(digit)
    crop = np.pad(digit[y:y + h, x:x + w].astype(np.float32) / 255.0, 1)  # a margin so edges fade out
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    ink = np.clip(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    if marker > 0:  # a felt-tip: every stroke grows by the same radius
        radius = max(1, round(marker * scale))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        ink = cv2.dilate(np.pad(ink, radius), kernel)
    return ink


def place(canvas: np.ndarray, ink: np.ndarray, centre: tuple[float, float]) -> None:
    """Add ``ink`` into ``canvas`` (both coverage maps) with its centre near ``centre``, kept inside the canvas."""
    height, width = canvas.shape
    h, w = ink.shape
    x = int(np.clip(round(centre[0] * width - w / 2), 0, max(0, width - w)))
    y = int(np.clip(round(centre[1] * height - h / 2), 0, max(0, height - h)))
    region = canvas[y:y + h, x:x + w]
    np.maximum(region, ink[:region.shape[0], :region.shape[1]], out=region)


def photograph(coverage: np.ndarray, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage (H, W) -> an RGB uint8 picture: colours, uneven light and sensor noise."""
    height, width = coverage.shape
    ink, paper = np.array(style.ink, np.float32), np.array(style.paper, np.float32)
    picture = paper + (ink - paper) * coverage[..., None]      # (H, W, 3)
    # brightness falls off linearly along the light's direction: a sum of a row term and a column term
    along_x = (np.arange(width, dtype=np.float32) / width - 0.5) * np.cos(style.light_angle)
    along_y = (np.arange(height, dtype=np.float32) / height - 0.5) * np.sin(style.light_angle)
    along = along_y[:, None] + along_x[None, :]
    light = 1.0 - style.lighting * (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    picture *= light[..., None]
    if style.noise > 0:  # one value per pixel for all three channels: a third of the cost, the same look
        picture += rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(style.noise)
    return np.clip(picture, 0, 255).astype(np.uint8)


def encode(picture: np.ndarray, style: Style) -> bytes:
    buffer = io.BytesIO()
    if style.jpeg_quality is None:
        Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    else:
        Image.fromarray(picture).save(buffer, format="JPEG", quality=style.jpeg_quality)
    return buffer.getvalue()


def fitting_scale(digits: list[np.ndarray], style: Style, gap: float = 0.0) -> float:
    """How much to enlarge MNIST pixels so the digits fill ``style.fill`` of the height and fit the width."""
    heights = [ink_box(d)[3] for d in digits]
    widths = [ink_box(d)[2] + 2 for d in digits]
    scale = style.fill * style.height / max(heights)
    needed_width = (sum(widths) + gap * (len(digits) - 1) + 2 * style.marker * len(digits)) * scale
    return min(scale, 0.95 * style.width / needed_width * scale)


def render(digit: np.ndarray, style: Style, seed: int = 0) -> np.ndarray:
    """One (28, 28) uint8 MNIST digit drawn in ``style``: RGB uint8 (height, width, 3)."""
    return render_number([digit], style, seed=seed)


def render_number(digits: list[np.ndarray], style: Style, gap: float = 4.0, seed: int = 0) -> np.ndarray:
    """Several MNIST digits written side by side, ``gap`` MNIST pixels apart (0 or less: touching)."""
    rng = np.random.default_rng(seed)
    scale = fitting_scale(digits, style, gap)
    pieces = [enlarge(d, scale, style.marker) for d in digits]
    step = gap * scale
    strip_width = int(sum(p.shape[1] for p in pieces) + step * (len(pieces) - 1)) + 1
    strip = np.zeros((max(p.shape[0] for p in pieces), max(strip_width, 1)), np.float32)
    x = 0.0
    for piece in pieces:
        left = int(round(x))
        top = (strip.shape[0] - piece.shape[0]) // 2
        region = strip[top:top + piece.shape[0], left:left + piece.shape[1]]
        np.maximum(region, piece[:region.shape[0], :region.shape[1]], out=region)
        x += piece.shape[1] + step
    coverage = np.zeros((style.height, style.width), np.float32)
    place(coverage, strip, style.centre)
    return photograph(coverage, style, rng)


def render_file(digit: np.ndarray, style: Style, seed: int = 0) -> bytes:
    """One digit drawn in ``style`` and saved the way the style says (PNG or JPEG bytes)."""
    return encode(render(digit, style, seed), style)


def render_set(digits: np.ndarray, seed: int = 0) -> list[tuple[bytes, Style]]:
    """Each digit of ``digits`` (N, 28, 28) uint8 in its own random style; file bytes and the style used."""
    rng = np.random.default_rng(seed)
    rendered = []
    for index, digit in enumerate(digits):
        style = random_style(rng)
        rendered.append((render_file(digit, style, seed=seed * 1_000_003 + index), style))
    return rendered


# --- letters: what a digit recogniser must refuse -----------------------------------------------------------------

def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, steps: int = 10) -> list:
    """Points on an ellipse from ``start`` to ``stop`` degrees (counter-clockwise as on paper, y pointing down)."""
    angles = np.radians(np.linspace(start, stop, steps))
    return [(cx + rx * np.cos(a), cy - ry * np.sin(a)) for a in angles]


# Capital letters as a person writes them with a pen: strokes (polylines) in a box of height 1, y pointing down.
# I and O are left out: written by hand they are the digits 1 and 0.
LETTER_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "A": [[(0, 1), (0.35, 0), (0.7, 1)], [(0.15, 0.62), (0.55, 0.62)]],
    "B": [[(0, 0), (0, 1)], [(0, 0), (0.35, 0), *_arc(0.35, 0.25, 0.25, 0.25, 90, -90), (0, 0.5)],
          [(0, 0.5), (0.4, 0.5), *_arc(0.4, 0.75, 0.28, 0.25, 90, -90), (0, 1)]],
    "C": [_arc(0.4, 0.5, 0.4, 0.5, 50, 310, 16)],
    "D": [[(0, 0), (0, 1)], [(0, 0), (0.25, 0), *_arc(0.25, 0.5, 0.45, 0.5, 90, -90, 14), (0, 1)]],
    "E": [[(0.6, 0), (0, 0), (0, 1), (0.6, 1)], [(0, 0.5), (0.45, 0.5)]],
    "F": [[(0.6, 0), (0, 0), (0, 1)], [(0, 0.48), (0.45, 0.48)]],
    "G": [[*_arc(0.4, 0.5, 0.4, 0.5, 50, 360, 16), (0.45, 0.5)]],
    "H": [[(0, 0), (0, 1)], [(0.6, 0), (0.6, 1)], [(0, 0.5), (0.6, 0.5)]],
    "J": [[(0.15, 0), (0.75, 0)], [(0.5, 0), (0.5, 0.7), *_arc(0.25, 0.7, 0.25, 0.3, 0, -180)]],
    "K": [[(0, 0), (0, 1)], [(0.6, 0), (0, 0.55)], [(0.18, 0.42), (0.65, 1)]],
    "L": [[(0, 0), (0, 1), (0.55, 1)]],
    "M": [[(0, 1), (0.05, 0), (0.4, 0.6), (0.75, 0), (0.8, 1)]],
    "N": [[(0, 1), (0, 0), (0.65, 1), (0.65, 0)]],
    "P": [[(0, 1), (0, 0), (0.3, 0), *_arc(0.3, 0.27, 0.3, 0.27, 90, -90), (0, 0.54)]],
    "Q": [_arc(0.4, 0.5, 0.4, 0.5, 0, 360, 20), [(0.45, 0.7), (0.85, 1.05)]],
    "R": [[(0, 1), (0, 0), (0.3, 0), *_arc(0.3, 0.27, 0.3, 0.27, 90, -90), (0, 0.54)], [(0.22, 0.54), (0.65, 1)]],
    "S": [[*_arc(0.33, 0.25, 0.33, 0.25, 20, 270, 12), *_arc(0.33, 0.75, 0.33, 0.25, 90, -160, 12)]],
    "T": [[(0, 0), (0.7, 0)], [(0.35, 0), (0.35, 1)]],
    "U": [[(0, 0), (0, 0.65), *_arc(0.32, 0.65, 0.32, 0.35, 180, 360), (0.64, 0)]],
    "V": [[(0, 0), (0.35, 1), (0.7, 0)]],
    "W": [[(0, 0), (0.2, 1), (0.4, 0.35), (0.6, 1), (0.8, 0)]],
    "X": [[(0, 0), (0.65, 1)], [(0.65, 0), (0, 1)]],
    "Y": [[(0, 0), (0.35, 0.5), (0.7, 0)], [(0.35, 0.5), (0.35, 1)]],
    "Z": [[(0, 0), (0.65, 0), (0, 1), (0.65, 1)]],
}


def pen_letter(letter: str, rng: np.random.Generator, height: int = 200) -> np.ndarray:
    """One capital letter written by an unsteady hand: ink coverage (h, w) in [0, 1], ``height`` pixels tall.

    The strokes are slanted, rotated and stretched a little, every point wobbles, and the pen is 6-16% of the
    letter's height wide (MNIST's strokes are 10-15% of a digit's).
    """
    slant, angle = rng.uniform(-0.3, 0.3), np.radians(rng.uniform(-10, 10))
    stretch = rng.uniform(0.8, 1.25)
    warp = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ \
        np.array([[stretch, -slant], [0.0, 1.0]])
    strokes = [np.asarray(s, np.float64) @ warp.T + rng.normal(0, 0.025, (len(s), 2))
               for s in LETTER_STROKES[letter]]
    points = np.concatenate(strokes)
    pen = max(2, round(rng.uniform(0.06, 0.16) * height))
    low, span = points.min(axis=0), np.ptp(points, axis=0).max()
    margin = pen
    size = np.ceil(np.ptp(points, axis=0) / span * height).astype(int) + 2 * margin + 1
    canvas = np.zeros((size[1], size[0]), np.uint8)
    for stroke in strokes:
        pixels = np.round((stroke - low) / span * height * 8 + margin * 8).astype(np.int32)  # 3 fractional bits
        cv2.polylines(canvas, [pixels], False, 255, pen, cv2.LINE_AA, shift=3)
    return canvas.astype(np.float32) / 255.0


def typed_letter(letter: str, height: int) -> np.ndarray:
    """``letter`` typed in the font Pillow ships with (no system fonts needed): ink coverage (h, w) in [0, 1]."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(8, height))
    left, top, right, bottom = font.getbbox(letter)
    sheet = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(sheet).text((2 - left, 2 - top), letter, font=font, fill=255)
    return np.asarray(sheet, np.float32) / 255.0


def _letter_file(ink: np.ndarray, style: Style, rng: np.random.Generator) -> bytes:
    if ink.shape[1] > 0.95 * style.width:  # a wide letter on a narrow canvas: shrink it to fit, as `fitting_scale`
        factor = 0.95 * style.width / ink.shape[1]
        ink = cv2.resize(ink, (max(1, round(ink.shape[1] * factor)), max(1, round(ink.shape[0] * factor))),
                         interpolation=cv2.INTER_AREA)
    coverage = np.zeros((style.height, style.width), np.float32)
    place(coverage, ink, style.centre)
    return encode(photograph(coverage, style, rng), style)


def render_letter_file(letter: str, style: Style, seed: int = 0, typed: bool = False) -> bytes:
    """A capital letter, pen-written (or ``typed``), drawn like a digit in ``style`` (paper, ink, light, noise)."""
    rng = np.random.default_rng(seed)
    height = max(8, round(style.fill * style.height))
    ink = typed_letter(letter, height) if typed else pen_letter(letter, rng, height=height)
    return _letter_file(ink, style, rng)


def render_letters(letters: str, count: int, seed: int = 0, typed: bool = False) -> list[tuple[str, bytes]]:
    """``count`` images of each letter in ``letters``, each in its own random style: (letter, file bytes).

    ``typed`` letters come from a font instead of the pen model: a source the network never learnt from.
    """
    rng = np.random.default_rng(seed)
    rendered = []
    for letter in letters:
        for _ in range(count):
            style = random_style(rng)
            rendered.append((letter, render_letter_file(letter, style, seed=int(rng.integers(2**31)), typed=typed)))
    return rendered
