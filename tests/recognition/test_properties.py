"""Property-based tests of the public recognition API: whatever a caller hands in - random bytes, damaged files,
images of every size, mode and pixel type, arrays of any dtype - ``prepare`` answers or raises ImageError (its
documented error, a ValueError), with a one-line message; ``Recognizer.predict`` never raises for a bad item but
gives it an error of its own, and answers every item in order."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitlab.recognition.decode import ImageError
from digitlab.recognition.predict import Recognizer
from digitlab.recognition.preprocess import prepare

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
         "I", "I;16", "I;16B", "F"]
FORMATS = {"PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}, "TIFF": {"1", "L", "LA", "P", "RGB", "RGBA",
           "CMYK", "YCbCr", "LAB", "I", "I;16", "F"}, "BMP": {"1", "L", "P", "RGB"}, "GIF": {"L", "P"},
           "JPEG": {"L", "RGB", "CMYK"}, "WEBP": {"RGB", "RGBA"}}
DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64]


@st.composite
def pictures(draw, max_side: int = 300) -> np.ndarray:
    """An RGB uint8 picture of any size: flat, noise, or a dark bar on light paper (something like a stroke)."""
    width, height = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["flat", "noise", "stroke"]))
    if kind == "flat":
        return np.full((height, width, 3), draw(st.integers(0, 255)), np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    picture = np.full((height, width, 3), 235, np.uint8)
    x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
    picture[y0:y0 + max(1, height // 2), x0:x0 + max(1, width // 8)] = int(rng.integers(0, 120))
    return picture


def in_mode(rgb: Image.Image, mode: str) -> Image.Image:
    if mode == "LAB":
        return rgb.convert("LAB")
    if mode == "La":
        return rgb.convert("LA").convert("La")
    if mode in ("I", "I;16", "I;16B"):
        return rgb.convert("L").convert("I").convert(mode)
    return rgb.convert(mode)


@st.composite
def pil_images(draw) -> Image.Image:
    return in_mode(Image.fromarray(draw(pictures())), draw(st.sampled_from(MODES)))


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def image_files(draw) -> bytes:
    """A valid file in one of the formats digitlab reads, of a mode that format holds."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(sorted(FORMATS[fmt])))
    return encoded(in_mode(Image.fromarray(draw(pictures(max_side=200))), mode), fmt)


@st.composite
def damaged_files(draw) -> bytes:
    """A valid file with bytes changed, cut short or appended: what a decoder meets from a stranger."""
    data = bytearray(draw(image_files()))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[:draw(st.integers(1, len(data)))]) + draw(st.binary(max_size=16))


@st.composite
def arrays(draw) -> np.ndarray:
    shape = draw(st.sampled_from([(), (1,), (2,), (3,), (4,), (5,)]))
    height, width = draw(st.integers(0, 200)), draw(st.integers(0, 200))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.normal(0.5, draw(st.sampled_from([0.3, 100.0, 1e6])), (height, width, *shape))
    if np.issubdtype(dtype, np.floating) and draw(st.booleans()):
        values.flat[::7] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype)


ANY_INPUT = st.one_of(st.binary(max_size=2048), image_files(), damaged_files(), pil_images(), arrays())


def prepared_or_refused(source, multi: bool) -> None:
    """``prepare`` answers (glyphs, or none and a reason) or raises ImageError in one line; nothing else."""
    try:
        prepared = prepare(source, multi=multi)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert prepared.glyphs or prepared.reason, "no glyphs and no reason"
    for glyph in prepared.glyphs:
        assert glyph.image.shape == (28, 28) and np.isfinite(glyph.image).all()


@PROPERTY
@given(st.binary(max_size=4096), st.booleans())
def test_random_bytes(data, multi):
    prepared_or_refused(data, multi)


@PROPERTY
@given(image_files(), st.booleans())
def test_valid_files_of_every_format_size_and_mode(data, multi):
    prepared_or_refused(data, multi)


@PROPERTY
@given(damaged_files(), st.booleans())
def test_damaged_files(data, multi):
    prepared_or_refused(data, multi)


@PROPERTY
@given(pil_images(), st.booleans())
def test_pil_images_of_every_mode(image, multi):
    prepared_or_refused(image, multi)


@PROPERTY
@given(arrays(), st.booleans())
def test_arrays_of_every_dtype_and_shape(array, multi):
    prepared_or_refused(array, multi)


class _FlatEngine:
    """An engine that says every class is as likely: the properties here are about reading, not about a model."""

    metadata = {"classes": [str(d) for d in range(10)], "normalisation": {"mean": 0.1307, "std": 0.3081}}

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 10), np.float32)


@pytest.mark.parametrize("threads", [1, 3])
def test_recognizer_answers_every_item_whatever_they_are(threads):
    recognizer = Recognizer(_FlatEngine(), threshold=0.5, threads=threads, batch_size=4)

    @PROPERTY
    @given(st.lists(st.one_of(ANY_INPUT, st.none(), st.integers(), st.text(max_size=5)), max_size=6),
           st.booleans())
    def answers(items, multi):
        results = recognizer.predict(items, multi=multi)
        assert len(results) == len(items)
        for result in results:
            assert (result.error is None) or ("\n" not in result.error and not result.digits)
            result.to_dict()

    answers()


# --- the cost of reading is bounded whatever the image's shape -----------------------------------------------------

MORPHOLOGY = ("dilate", "erode", "morphologyEx")


@pytest.fixture
def morphology_work(monkeypatch):
    """The pixel-kernel products of every dilation and erosion ``prepare`` runs: the part of a read whose cost grows
    with the working image and a stroke's size, measured without a clock (a list holding one running total). A
    rectangle of ones costs its height plus width a pixel, as OpenCV runs it one direction at a time."""
    import cv2

    total = [0]
    for name in MORPHOLOGY:
        original = getattr(cv2, name)

        def counted(src, *args, _original=original, _name=name, **kwargs):
            kernel = kwargs.get("kernel", args[1] if _name == "morphologyEx" else args[0] if args else None)
            kernel = np.ones((3, 3)) if kernel is None else np.asarray(kernel)
            total[0] += np.asarray(src).size * (sum(kernel.shape) if kernel.all() else kernel.size)
            return _original(src, *args, **kwargs)
        monkeypatch.setattr(cv2, name, counted)
    return total


def line_drawing(width: int, height: int) -> bytes:
    """A dark line across a white strip of any shape (the stroke spans the middle half of the longer side)."""
    image = np.full((height, width), 255, np.uint8)
    if height >= width:
        image[int(0.3 * height):int(0.7 * height), : max(1, width // 3) or 1] = 0
    else:
        image[: max(1, height // 3), int(0.3 * width):int(0.7 * width)] = 0
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.integers(1, 3), st.integers(2, 200_000), st.booleans())
def test_a_strip_of_any_shape_costs_no_more_than_a_square_drawing(morphology_work, short, long, wide):
    """A 1-pixel-wide strip was stretched to a line tens of thousands of working pixels long, and the stroke
    widening then dilated it with a kernel as long as the stroke: 111 bytes took minutes and gigabytes."""
    morphology_work[0] = 0
    prepare(line_drawing(280, 280))
    square = morphology_work[0]
    morphology_work[0] = 0
    width, height = (long, short) if wide else (short, long)
    prepared_or_refused(line_drawing(width, height), multi=False)
    # Bounded by the working size, not by the strip's length: a long strip costs a few times a square drawing.
    assert morphology_work[0] <= 16 * square, (width, height, morphology_work[0], square)


def test_a_one_pixel_wide_line_is_read_at_once():
    """The file of the report that found the stall: a 1x10000 PNG of about 100 bytes."""
    import time

    data = line_drawing(1, 10_000)
    assert len(data) < 1_000
    start = time.perf_counter()
    prepared = prepare(data)
    assert time.perf_counter() - start < 10  # a guard against the stall (minutes before), not a speed target
    assert prepared.glyphs and prepared.glyphs[0].image.shape == (28, 28)
