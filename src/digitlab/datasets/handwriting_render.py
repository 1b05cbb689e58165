"""Any real handwritten digit drawn again in one of the ways people hand digits in: the cases the benchmark of
other writers' handwriting (``handwriting.py``, ``benchmarks/other_writers.py``) reports one by one.

``render.py`` draws MNIST digits as photos of a page. People also hand in crops cut tight around the ink, small
scans, binarised forms, digits stretched to fill their box, marker and hairline strokes, a small digit
somewhere on a big page, and a digit running into the edge of an unevenly lit photo. Each case below draws one of
those from a grayscale digit of any size (28x28 MNIST, 8x8 scikit-learn digits, values 0-255 or 0-16; the brightest
pixel counts as full ink), from a seeded generator, so the same generator gives the same file bytes.

    rng = np.random.default_rng(0)
    data = draw(digit, "tight-crop", rng)            # PNG or JPEG bytes, as a person's file would be
    drawing = draw_case(digit, "tight-crop", rng)    # the same, with what was drawn (polarity, edges touched)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from digitlab.datasets.render import DARK_ON_LIGHT, LIGHT_ON_DARK, Style, encode, photograph, random_style, \
    render

CASES = ("photo", "small-on-page", "tight-crop", "small-scan", "binary", "fills-box", "thick", "thin", "blocky",
         "edge-on-uneven-page")
EDGES = ("left", "top", "right", "bottom")
MNIST_SIDE = 28      # the source size the stroke widths of render.Style are measured in


@dataclass
class Drawing:
    """One drawn file and what was done to make it, for tests and for grouping results."""

    data: bytes
    case: str
    polarity: str                                 # "dark-on-light" or "light-on-dark"
    size: tuple[int, int]                         # width, height of the image in the file
    notes: dict = field(default_factory=dict)     # case details: edges the ink touches, scan size, levels...


def draw(digit: np.ndarray, case: str, rng: np.random.Generator) -> bytes:
    """``digit`` drawn as ``case`` (one of ``CASES``): the file's bytes."""
    return draw_case(digit, case, rng).data


def draw_case(digit: np.ndarray, case: str, rng: np.random.Generator) -> Drawing:
    """``digit`` drawn as ``case``, with the details of the drawing."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; choose one of: {', '.join(CASES)}")
    return DRAWERS[case](coverage(digit), rng)


def coverage(digit: np.ndarray) -> np.ndarray:
    """A grayscale digit (bright ink on dark, any size and range) -> float32 ink coverage in [0, 1]."""
    values = np.asarray(digit, dtype=np.float32)
    if values.ndim != 2 or values.max() <= 0:
        raise ValueError(f"a digit must be a 2-D grayscale array with some ink, not shape {values.shape}")
    return np.clip(values / values.max(), 0.0, 1.0)


def ink_crop(ink: np.ndarray, level: float = 0.05) -> np.ndarray:
    """``ink`` cut to the box of the pixels above ``level``."""
    ys, xs = np.nonzero(ink > level)
    return ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def resized(ink: np.ndarray, width: int, height: int, interpolation: int | None = None) -> np.ndarray:
    """``ink`` resized to (width, height): area averaging when shrinking, cubic when enlarging, unless told."""
    if interpolation is None:
        interpolation = cv2.INTER_AREA if width * height < ink.size else cv2.INTER_CUBIC
    return np.clip(cv2.resize(ink, (max(1, width), max(1, height)), interpolation=interpolation), 0.0, 1.0)


def scaled_to_height(ink: np.ndarray, height: int) -> np.ndarray:
    """The ink's box scaled (aspect kept) so the ink is ``height`` pixels tall."""
    crop = ink_crop(ink)
    factor = height / crop.shape[0]
    return resized(crop, round(crop.shape[1] * factor), height)


def colours(rng: np.random.Generator, light_on_dark: float = 0.3, gray: bool = False):
    """(ink, paper) RGB: a pen and paper pair, or (``gray``) a scanner's dark and light levels."""
    if gray:
        dark, light = int(rng.integers(0, 70)), int(rng.integers(190, 256))
        pair = ((dark,) * 3, (light,) * 3)
        return pair[::-1] if rng.random() < light_on_dark else pair
    pairs = LIGHT_ON_DARK if rng.random() < light_on_dark else DARK_ON_LIGHT
    return pairs[rng.integers(len(pairs))]


def finish(ink: np.ndarray, case: str, rng: np.random.Generator, pair, noise: float = 0.0,
           jpeg_quality: int | None = None, notes: dict | None = None, lighting: float = 0.0,
           light_angle: float = 0.0) -> Drawing:
    """Coverage (H, W) -> a file: the pair's colours, a little sensor noise, PNG or JPEG; evenly lit unless
    ``lighting`` says how much darker the dim side is (``render.Style``)."""
    height, width = ink.shape
    style = Style(width=width, height=height, fill=1.0, centre=(0.5, 0.5), ink=tuple(pair[0]),
                  paper=tuple(pair[1]), marker=0.0, lighting=lighting, light_angle=light_angle, noise=noise,
                  jpeg_quality=jpeg_quality)
    data = encode(photograph(ink, style, rng), style)
    return Drawing(data, case, style.polarity, (width, height), notes or {})


def maybe_jpeg(rng: np.random.Generator, share: float = 0.5) -> int | None:
    return int(rng.integers(60, 96)) if rng.random() < share else None


# --- the cases, in the order of CASES -----------------------------------------------------------------------------

def photo(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """render.py's photo of a page: big canvas, paper and ink colours, uneven light, noise, JPEG."""
    style = random_style(rng)
    # render.Style's marker radius is in MNIST pixels; a smaller source gets a proportionally smaller one
    style = replace(style, marker=style.marker * ink.shape[0] / MNIST_SIDE)
    digit = np.round(ink * 255).astype(np.uint8)
    picture = render(digit, style, seed=int(rng.integers(2**31)))
    return Drawing(encode(picture, style), "photo", style.polarity, (style.width, style.height))


def small_on_page(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """A digit 3-10% of the height of a 1,000-2,000 px page, anywhere on it, as a phone photo of a sheet."""
    width, height = (int(v) for v in rng.integers(1000, 2001, size=2))
    ink_pair = colours(rng, light_on_dark=0.2)
    fill = float(rng.uniform(0.03, 0.10))
    style = Style(width=width, height=height, fill=fill,
                  centre=(float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.05, 0.95))),
                  ink=ink_pair[0], paper=ink_pair[1],
                  marker=0.0, lighting=float(rng.uniform(0.0, 0.2)), light_angle=float(rng.uniform(0, 2 * np.pi)),
                  noise=float(rng.uniform(0.0, 6.0)), jpeg_quality=maybe_jpeg(rng, 0.7))
    picture = render(np.round(ink * 255).astype(np.uint8), style, seed=int(rng.integers(2**31)))
    return Drawing(encode(picture, style), "small-on-page", style.polarity, (width, height), {"fill": fill})


def against_edges(digit: np.ndarray, edges, rng: np.random.Generator) -> np.ndarray:
    """``digit`` on paper it runs into at ``edges`` (0-3: left, top, right, bottom), with a margin of a tenth to a
    third of its height at the other sides."""
    height = digit.shape[0]
    left, top, right, bottom = [0 if side in edges else int(rng.integers(max(1, height // 10), max(2, height // 3)))
                                for side in range(4)]
    return np.pad(digit, ((top, bottom), (left, right)))


def tight_crop(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """Dark ink cropped to its own box, as a person cuts a digit out of a form: the ink touches one, two or all
    four edges; the other edges keep a margin."""
    digit = scaled_to_height(ink, int(rng.integers(28, 201)))
    digit = ink_crop(digit, level=0.5)   # the solid stroke, not its faint rim, reaches the edge
    touching = [int(rng.choice([1, 2, 4]))]
    edges = tuple(sorted(rng.choice(4, size=touching[0], replace=False)))
    page = against_edges(digit, edges, rng)
    pair = colours(rng, light_on_dark=0.0, gray=rng.random() < 0.5)
    return finish(page, "tight-crop", rng, pair, noise=float(rng.uniform(0, 4)), jpeg_quality=maybe_jpeg(rng),
                  notes={"edges": tuple(EDGES[side] for side in edges)})


def small_scan(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """A small scan, 16x16 to 80x80, sometimes enlarged again by a viewer (nearest-neighbour or bilinear)."""
    side = int(rng.integers(16, 81))
    crop = ink_crop(ink)
    margin = float(rng.uniform(0.0, 0.2))
    factor = side * (1 - 2 * margin) / max(crop.shape)
    digit = resized(crop, round(crop.shape[1] * factor), round(crop.shape[0] * factor))
    page = np.zeros((side, side), np.float32)
    top, left = (side - digit.shape[0]) // 2, (side - digit.shape[1]) // 2
    page[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    notes = {"scan_side": side, "enlarged": None}
    if rng.random() < 0.5:
        how = "nearest" if rng.random() < 0.5 else "bilinear"
        times = int(rng.integers(2, 11))
        page = resized(page, side * times, side * times,
                       cv2.INTER_NEAREST if how == "nearest" else cv2.INTER_LINEAR)
        notes["enlarged"] = f"{how} x{times}"
    return finish(page, "small-scan", rng, colours(rng, gray=True), noise=float(rng.uniform(0, 3)),
                  jpeg_quality=maybe_jpeg(rng, 0.3), notes=notes)


def binary(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """A binarised scan: pure black and white, at a low resolution, enlarged with nearest-neighbour (blocky)."""
    side = int(rng.integers(12, 41))
    crop = ink_crop(ink)
    factor = side * 0.8 / max(crop.shape)
    digit = resized(crop, round(crop.shape[1] * factor), round(crop.shape[0] * factor))
    threshold = float(rng.uniform(0.3, 0.6))
    page = np.zeros((side, side), np.float32)
    top, left = (side - digit.shape[0]) // 2, (side - digit.shape[1]) // 2
    page[top:top + digit.shape[0], left:left + digit.shape[1]] = digit > threshold
    times = int(rng.integers(3, 13))
    page = np.kron(page, np.ones((times, times), np.float32))
    pair = ((0, 0, 0), (255, 255, 255))
    pair = pair[::-1] if rng.random() < 0.3 else pair
    return finish(page, "binary", rng, pair, notes={"side": side, "times": times, "threshold": threshold})


def fills_box(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """The digit stretched to fill its image (as some scanned collections store digits): the aspect changes, the
    margin is a pixel or two."""
    crop = ink_crop(ink)
    aspect = crop.shape[1] / crop.shape[0] * float(rng.uniform(0.6, 1.7))
    height = int(rng.integers(32, 301))
    width = int(np.clip(round(height * aspect), 8, 2 * height))
    digit = resized(crop, width, height)
    margin = int(rng.integers(0, 3))
    page = np.pad(digit, margin)
    return finish(page, "fills-box", rng, colours(rng, gray=rng.random() < 0.5), noise=float(rng.uniform(0, 4)),
                  jpeg_quality=maybe_jpeg(rng), notes={"aspect": aspect})


def thick(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """A fat marker: every stroke grown by 6-12% of the digit's height."""
    height = int(rng.integers(60, 301))
    digit = scaled_to_height(ink, height)
    radius = max(1, round(height * float(rng.uniform(0.06, 0.12))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    digit = cv2.dilate(np.pad(digit, radius), kernel)
    page = np.pad(digit, height // 4)
    return finish(page, "thick", rng, colours(rng), noise=float(rng.uniform(0, 4)), jpeg_quality=maybe_jpeg(rng),
                  notes={"radius": radius})


def thin(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """A hairline: every stroke thinned to its 1-pixel centre line, sometimes widened to 2 pixels, on a digit
    40-150 pixels tall (strokes of 1-5% of its height, where MNIST's are 10-15%)."""
    height = int(rng.integers(40, 151))
    digit = scaled_to_height(ink, height) > 0.5
    line = skeleton(digit).astype(np.float32)
    width = 1
    if rng.random() < 0.5:
        line = cv2.dilate(line, np.ones((2, 2), np.uint8))
        width = 2
    page = np.pad(line, height // 4)
    return finish(page, "thin", rng, colours(rng), noise=float(rng.uniform(0, 3)), jpeg_quality=maybe_jpeg(rng),
                  notes={"line_width": width})


def blocky(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """Low-resolution source pixels, gray levels kept, shown as big blocks (nearest-neighbour enlargement)."""
    crop = ink_crop(ink)
    longest = max(crop.shape)   # never more pixels than the source has (a small letter may have fewer than 8)
    side = int(rng.integers(min(8, longest), min(28, longest) + 1))
    factor = side / max(crop.shape)
    digit = resized(crop, round(crop.shape[1] * factor), round(crop.shape[0] * factor))
    digit = np.pad(digit, max(1, side // 6))
    times = int(rng.integers(6, 31))
    page = np.kron(digit, np.ones((times, times), np.float32))
    return finish(page, "blocky", rng, colours(rng, gray=rng.random() < 0.5), jpeg_quality=maybe_jpeg(rng, 0.3),
                  notes={"side": side, "times": times})


def edge_on_uneven_page(ink: np.ndarray, rng: np.random.Generator) -> Drawing:
    """Dark ink running into one edge of a page, or two that meet at a corner, lit unevenly: a digit cut from a
    photographed form, its brightness falling by 15-25 % across the picture, on gray or coloured paper. The ink at
    the edge and the page's own range of light share the border, where only the paper is expected."""
    digit = scaled_to_height(ink, int(rng.integers(40, 241)))
    digit = ink_crop(digit, level=0.5)   # the solid stroke, not its faint rim, reaches the edge
    first = int(rng.integers(4))
    edges = (first,) if rng.random() < 0.5 else tuple(sorted((first, (first + 1) % 4)))
    page = against_edges(digit, edges, rng)
    pair = colours(rng, light_on_dark=0.0, gray=rng.random() < 0.5)
    lighting, light_angle = float(rng.uniform(0.15, 0.25)), float(rng.uniform(0, 2 * np.pi))
    return finish(page, "edge-on-uneven-page", rng, pair, noise=float(rng.uniform(0, 4)),
                  jpeg_quality=maybe_jpeg(rng), lighting=lighting, light_angle=light_angle,
                  notes={"edges": tuple(EDGES[side] for side in edges), "lighting": lighting,
                         "light_angle": light_angle})


DRAWERS = {"photo": photo, "small-on-page": small_on_page, "tight-crop": tight_crop, "small-scan": small_scan,
           "binary": binary, "fills-box": fills_box, "thick": thick, "thin": thin, "blocky": blocky,
           "edge-on-uneven-page": edge_on_uneven_page}
assert tuple(DRAWERS) == CASES


def skeleton(shape: np.ndarray) -> np.ndarray:
    """A boolean shape thinned to lines one pixel wide that keep its connections (Zhang and Suen's thinning)."""
    image = np.pad(shape.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            # the 8 neighbours p2..p9, clockwise from the one above
            p = [np.roll(image, shift, axis=(0, 1)) for shift in
                 [(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)]]
            count = sum(p)
            ring = p + [p[0]]
            crossings = sum((ring[i] == 0) & (ring[i + 1] == 1) for i in range(8))
            if step == 0:
                away = (p[0] * p[2] * p[4] == 0) & (p[2] * p[4] * p[6] == 0)
            else:
                away = (p[0] * p[2] * p[6] == 0) & (p[0] * p[4] * p[6] == 0)
            remove = (image == 1) & (count >= 2) & (count <= 6) & (crossings == 1) & away
            if remove.any():
                image[remove] = 0
                changed = True
        if not changed:
            return image[1:-1, 1:-1].astype(bool)
