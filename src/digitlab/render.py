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
