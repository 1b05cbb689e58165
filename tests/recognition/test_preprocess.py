"""preprocess: real MNIST digits redrawn as people supply them must come back as (nearly) the digit they were, and
every kind of file a person may hand in must either be read or refused with a one-line reason."""

from __future__ import annotations

import io
import subprocess
import sys
import zlib
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from digitlab.datasets.render import Style, render, render_number, render_set
from digitlab.recognition.decode import (NOT_AN_IMAGE, TOO_LARGE, UNREADABLE, ImageError, _stored_png, decode,
                                         load_image, to_gray)
from digitlab.recognition.engine import normalise
from digitlab.recognition.preprocess import prepare


@pytest.fixture(scope="module")
def digits(test_split):
    images, labels = test_split
    return images.numpy(), labels.numpy()


@pytest.fixture(scope="module")
def seven(digits):
    return digits[0][0]  # the first test image, a 7


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pixel correlation of two 28x28 images at their best alignment within one pixel: MNIST rounds the centre of
    mass to whole pixels, so a one-pixel offset is within what MNIST itself does."""
    b = b.astype(np.float64)
    return max(float(np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel(), b.ravel())[0, 1])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def style(**changes) -> Style:
    base = dict(width=400, height=300, fill=0.6, centre=(0.5, 0.5), ink=(20, 20, 20), paper=(250, 250, 248),
                marker=0.0, lighting=0.0, light_angle=0.0, noise=2.0, jpeg_quality=None)
    return Style(**(base | changes))


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def only_glyph(source, **options) -> np.ndarray:
    prepared = prepare(source, **options)
    assert prepared.reason is None and len(prepared.glyphs) == 1, prepared.reason
    return prepared.glyphs[0].image


# --- the oracle: rendered MNIST digits -----------------------------------------------------------------------------

def test_rendered_digits_come_back_as_the_original(digits):
    images, _ = digits
    rendered = render_set(images[:40], seed=3)
    scores = [correlation(only_glyph(data), original) for (data, _), original in zip(rendered, images[:40])]
    assert np.median(scores) > 0.85, np.round(scores, 2)
    assert min(scores) > 0.5, np.round(scores, 2)


def test_output_has_the_mnist_form(digits):
    images, _ = digits
    for data, _ in render_set(images[40:60], seed=4):
        image = only_glyph(data)
        assert image.shape == (28, 28) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.9  # bright ink on black
        ys, xs = np.nonzero(image > 0)
        assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 <= 21  # fitted into 20x20
        total = image.sum()
        cy = (image.sum(1) * np.arange(28)).sum() / total
        cx = (image.sum(0) * np.arange(28)).sum() / total
        assert abs(cy - 14) <= 0.75 and abs(cx - 14) <= 0.75  # centre of mass at the centre, like MNIST


def test_model_reads_rendered_digits_as_it_reads_the_originals(digits, small_model_path):
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer

    images, _ = digits
    recognizer = Recognizer(load_engine(small_model_path), threshold=0.0)
    originals = recognizer.probabilities(images[:60].astype(np.float32) / 255).argmax(1)
    rendered = [data for data, _ in render_set(images[:60], seed=5)]
    ours = [p.digits[0].top3[0][0] for p in recognizer.predict(rendered)]
    assert (np.array(ours) == originals).mean() >= 0.9


# --- one hand-made case per way a picture differs from MNIST ------------------------------------------------------

@pytest.mark.parametrize("name,changes", [
    ("dark on light", {}),
    ("light on dark", {"ink": (250, 250, 250), "paper": (15, 15, 20)}),
    ("off centre", {"centre": (0.15, 0.2), "fill": 0.35}),
    ("uneven light", {"lighting": 0.6, "light_angle": 0.7}),
    ("sensor noise", {"noise": 12.0}),
    ("jpeg", {"jpeg_quality": 25}),
    ("coloured ink and paper", {"ink": (25, 40, 150), "paper": (250, 245, 200)}),
    ("marker", {"marker": 0.8}),
    ("tiny canvas", {"width": 40, "height": 40, "fill": 0.8}),
    ("long strip", {"width": 1000, "height": 120, "fill": 0.7}),
])
def test_each_condition_is_undone(seven, name, changes):
    from digitlab.datasets.render import encode

    drawn = style(**changes)
    data = encode(render(seven, drawn, seed=1), drawn)
    prepared = prepare(data)
    assert prepared.polarity == drawn.polarity
    assert len(prepared.glyphs) == 1 and correlation(prepared.glyphs[0].image, seven) > 0.7, name


def test_box_is_where_the_digit_is(seven):
    drawn = style(width=800, height=600, fill=0.3, centre=(0.8, 0.25), noise=0.0)
    box = prepare(png(render(seven, drawn))).glyphs[0].box
    x, y, w, h = box
    assert abs((x + w / 2) - 640) < 20 and abs((y + h / 2) - 150) < 20 and abs(h - 180) < 15


def test_polarity_can_be_overridden(seven):
    data = png(render(seven, style()))
    right = prepare(data, polarity="dark-on-light")
    wrong = prepare(data, polarity="light-on-dark")  # reads the paper as ink: a negative of the 7, at best
    assert right.polarity == "dark-on-light" and wrong.polarity == "light-on-dark"
    assert correlation(right.glyphs[0].image, seven) > 0.9
    assert not wrong.glyphs or correlation(wrong.glyphs[0].image, seven) < 0.8
    with pytest.raises(ValueError, match="polarity"):
        prepare(data, polarity="sideways")


def test_mnist_png_itself_is_nearly_unchanged(seven):
    assert correlation(only_glyph(png(seven)), seven) > 0.9


def test_huge_canvas(seven):
    drawn = style(width=4000, height=3000, fill=0.4, jpeg_quality=85)
    from digitlab.datasets.render import encode

    assert correlation(only_glyph(encode(render(seven, drawn), drawn)), seven) > 0.7


# --- file formats and modes ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_seven(seven):
    """The 7 as black ink on white paper, RGB uint8 (300, 400, 3)."""
    return render(seven, style(noise=0.0))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"])
def test_formats(paper_seven, seven, fmt):
    buffer = io.BytesIO()
    Image.fromarray(paper_seven).save(buffer, format=fmt)
    assert correlation(only_glyph(buffer.getvalue()), seven) > 0.8


def test_animated_gif_uses_the_first_frame(paper_seven, seven):
    first = Image.fromarray(paper_seven)
    blank = Image.new("RGB", first.size, (255, 255, 255))
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[blank], duration=100)
    assert correlation(only_glyph(buffer.getvalue()), seven) > 0.8


def test_exif_orientation_is_applied(paper_seven, seven):
    stored = Image.fromarray(paper_seven).transpose(Image.Transpose.ROTATE_90)  # a camera held sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif)
    prepared = prepare(buffer.getvalue())
    assert prepared.size == (400, 300)
    assert correlation(prepared.glyphs[0].image, seven) > 0.8


def test_exif_orientation_is_applied_to_a_png_too(paper_seven, seven):
    stored = Image.fromarray(paper_seven).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="PNG", exif=exif)
    assert b"eXIf" in buffer.getvalue()
    prepared = prepare(buffer.getvalue())
    assert prepared.size == (400, 300) and correlation(prepared.glyphs[0].image, seven) > 0.8


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "I;16", "RGB+key"])
def test_every_png_decodes_to_the_pixels_pillow_reads(mode, tmp_path):
    """Plain 8-bit PNGs take a faster decoder (libspng); the pixels must be exactly Pillow's, from bytes or a file,
    and the kinds it leaves to Pillow (palette, 16-bit, a transparent colour key) must still come out right."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode.split("+")[0]) if mode != "I;16" else \
        Image.fromarray((pixels[..., 0].astype(np.uint16) * 257))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **({"transparency": (1, 2, 3)} if mode == "RGB+key" else {}))
    (tmp_path / "a.png").write_bytes(buffer.getvalue())
    expected = Image.open(io.BytesIO(buffer.getvalue()))
    expected.load()
    for source in (buffer.getvalue(), tmp_path / "a.png"):
        decoded, scale = load_image(source)
        assert scale == 1.0 and decoded.size == (53, 37)
        assert decoded.mode == expected.mode and np.array_equal(np.asarray(decoded), np.asarray(expected)), source
        assert np.array_equal(to_gray(decoded), to_gray(expected))
        assert np.array_equal(to_gray(decode(source)[0]), to_gray(expected))  # what `prepare` reads
    if mode in ("L", "RGB"):  # opaque: the luminance Pillow computes, to its rounding
        assert np.abs(to_gray(expected) - np.asarray(expected.convert("L")) / 255).max() <= 1 / 255 + 1e-6


def test_png_data_inflated_ahead_gives_the_same_pixels():
    """A plain PNG's pixel data is inflated by zlib-ng and handed to libspng stored (`_stored_png`): several IDAT
    chunks and text chunks must come out as Pillow reads them; a damaged chunk or a stream that inflates past what
    the image can hold is left to the decoders, as before."""
    from PIL.PngImagePlugin import PngInfo

    pixels = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # noise: ~270 kB compressed
    info = PngInfo()
    info.add_text("Comment", "drawn on a canvas")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    assert data.count(b"IDAT") > 1 and b"tEXt" in data
    assert _stored_png(data) is not None
    assert np.array_equal(decode(data)[0], pixels)

    damaged = bytearray(data)
    damaged[data.index(b"IDAT") + 1000] ^= 0xFF
    assert _stored_png(bytes(damaged)) is None  # its CRC no longer matches

    # interlaced (Adam7: seven passes over every 8x8 block, each row unfiltered): Pillow does not write these
    rgba = np.random.default_rng(2).integers(0, 256, (61, 83, 4), dtype=np.uint8)
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = [b"\0" + row.tobytes() for x, y, dx, dy in passes for row in rgba[y::dy, x::dx] if row.size]
    interlaced = _png(struct.pack(">IIBBBBB", 83, 61, 8, 6, 0, 0, 1), b"".join(rows))
    assert Image.open(io.BytesIO(interlaced)).info.get("interlace") == 1
    assert _stored_png(interlaced) is not None and np.array_equal(decode(interlaced)[0], rgba)

    # 100x100 gray needs 10,100 bytes; this stream inflates to 50 MB
    assert _stored_png(_png(struct.pack(">IIBBBBB", 100, 100, 8, 0, 0, 0, 0), b"\0" * 50_000_000)) is None


@pytest.mark.parametrize("ink_value", [0, 255])
def test_alpha_is_composited_so_the_ink_shows(seven, ink_value):
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = ink_value
    rgba[..., 3] = cv2.resize(seven, (280, 280), interpolation=cv2.INTER_CUBIC)  # ink only where opaque
    assert correlation(only_glyph(png(rgba)), seven) > 0.8


def test_an_opaque_alpha_channel_changes_nothing(paper_seven):
    """A canvas or PNG saved with an alpha channel that is opaque everywhere is the same picture without it."""
    rgba = np.dstack([paper_seven, np.full(paper_seven.shape[:2], 255, np.uint8)])
    with_alpha, without = prepare(png(rgba)), prepare(png(paper_seven))
    assert with_alpha.reason is None and without.reason is None
    assert np.array_equal(with_alpha.glyphs[0].image, without.glyphs[0].image)
    assert with_alpha.glyphs[0].box == without.glyphs[0].box


@pytest.mark.parametrize("ink", [20, 235])
def test_a_transparent_picture_taller_than_a_band_is_composited_as_one_whole(ink):
    """``to_gray`` works a band of rows at a time: the result is the whole picture's composite all the same, the
    background chosen from the whole drawing (here: ink only in the last band)."""
    from digitlab.recognition.decode import BAND_PIXELS, to_gray

    rng = np.random.default_rng(ink)
    width = 700
    height = 3 * (BAND_PIXELS // width) + 5
    rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba[..., :3] = np.clip(rgba[..., :3] // 8 + ink - 16, 0, 255)
    rgba[..., 3] = 0
    rgba[-40:, 100:600, 3] = rng.integers(1, 256, (40, 500))
    luma = cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY) / np.float32(255)
    alpha = rgba[..., 3] / np.float32(255)
    background = 1.0 if (luma * alpha).sum() / alpha.sum() < 0.5 else 0.0
    whole = luma * alpha + background * (1.0 - alpha)
    gray = to_gray(rgba)
    assert gray.dtype == np.float32 and np.array_equal(gray, whole)
    assert gray[0, 0] == background and background == (1.0 if ink < 128 else 0.0)
    la = np.ascontiguousarray(rgba[..., [0, 3]])
    assert np.array_equal(to_gray(la), la[..., 0] / np.float32(255) * alpha + background * (1.0 - alpha))


def test_a_large_transparent_png_is_read_holding_little_more_than_its_gray():
    """A small upload can be a large picture (a 3000 x 3000 canvas of 50 kB here): reading it allocates the float
    gray image it works on and not several full-size copies besides (measured: docs/serving.md, 'Large images')."""
    import tracemalloc

    side = 3000
    rgba = np.zeros((side, side, 4), np.uint8)
    cv2.line(rgba, (700, 700), (2300, 700), (20, 20, 20, 255), 150)
    cv2.line(rgba, (2300, 700), (1200, 2400), (20, 20, 20, 255), 150)
    data, small = png(rgba), cv2.resize(rgba, (300, 300), interpolation=cv2.INTER_AREA)
    tracemalloc.start()
    try:
        large = prepare(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * side * side * 4  # one float32 copy is side * side * 4 bytes
    reduced = prepare(png(small))
    assert np.abs(large.glyphs[0].image - reduced.glyphs[0].image).max() < 0.1
    assert np.allclose(large.glyphs[0].box, [v * 10 for v in reduced.glyphs[0].box], atol=15)


def test_sixteen_bit(paper_seven, seven):
    gray16 = (cv2.cvtColor(paper_seven, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)
    data = png(gray16)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert correlation(only_glyph(data), seven) > 0.8


def test_cmyk_jpeg(paper_seven, seven):
    buffer = io.BytesIO()
    Image.fromarray(paper_seven).convert("CMYK").save(buffer, format="JPEG", quality=90)
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "CMYK"
    assert correlation(only_glyph(buffer.getvalue()), seven) > 0.8


def test_palette_with_transparency(seven):
    rgba = np.zeros((200, 200, 4), np.uint8)
    rgba[..., 3] = np.where(cv2.resize(seven, (200, 200)) > 128, 255, 0)
    image = Image.fromarray(rgba).convert("P")
    image.info["transparency"] = 0
    buffer = io.BytesIO()
    Image.fromarray(rgba).quantize(colors=4).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "P"
    assert correlation(only_glyph(buffer.getvalue()), seven) > 0.7


def test_arrays_and_paths(seven, tmp_path):
    path = tmp_path / "seven.png"
    path.write_bytes(png(seven))
    from_path, from_array, from_float = only_glyph(path), only_glyph(seven), only_glyph(seven / 255.0)
    assert np.allclose(from_path, from_array) and np.allclose(from_array, from_float, atol=0.02)
    assert to_gray(Image.fromarray(seven)).dtype == np.float32


# --- things that are no digit -------------------------------------------------------------------------------------

def test_blank_pages(seven):
    rng = np.random.default_rng(0)
    white = np.clip(245 + rng.normal(0, 2, (300, 400)), 0, 255).astype(np.uint8)
    ramp = np.clip(np.linspace(120, 250, 400)[None, :] + rng.normal(0, 2, (300, 400)), 0, 255).astype(np.uint8)
    for page in (white, ramp, np.zeros((50, 50), np.uint8)):
        prepared = prepare(png(page))
        assert prepared.glyphs == [] and prepared.reason.startswith("blank"), prepared.reason


def test_noise_is_no_digit():
    rng = np.random.default_rng(1)
    for noise in (rng.integers(0, 256, (300, 300), dtype=np.uint8),
                  cv2.GaussianBlur(rng.integers(0, 256, (300, 300), dtype=np.uint8), (0, 0), 3)):
        prepared = prepare(png(noise))
        assert prepared.glyphs == [] and prepared.reason is not None


def test_a_picture_with_dark_and_light_shapes_is_no_digit():
    rng = np.random.default_rng(2)
    picture = np.full((300, 400, 3), 128, np.uint8)
    for _ in range(12):
        centre = (int(rng.integers(0, 400)), int(rng.integers(0, 300)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(picture, centre, int(rng.integers(15, 60)), colour, -1)
    prepared = prepare(png(picture))
    assert prepared.glyphs == [] and "no clear ink" in prepared.reason


def test_a_word_is_no_single_digit():
    page = np.full((200, 600), 255, np.uint8)
    cv2.putText(page, "WWW", (30, 150), cv2.FONT_HERSHEY_SIMPLEX, 4, 0, 12)
    prepared = prepare(png(page))
    assert prepared.glyphs == [] and prepared.reason.startswith("not one digit")


def test_scattered_marks_are_no_single_digit():
    page = np.full((300, 300), 255, np.uint8)
    for x, y in ((50, 50), (250, 60), (60, 240), (240, 250), (150, 150)):
        cv2.circle(page, (x, y), 12, 0, -1)
    assert "separate pieces" in prepare(png(page)).reason


# --- files that cannot be read ------------------------------------------------------------------------------------

def test_unreadable_inputs_raise_one_line_reasons(tmp_path, paper_seven):
    full = io.BytesIO()
    Image.fromarray(paper_seven).save(full, format="PNG")
    jpeg = io.BytesIO()
    Image.fromarray(paper_seven).save(jpeg, format="JPEG")
    (tmp_path / "empty.png").write_bytes(b"")
    cases = {
        "zero bytes": (tmp_path / "empty.png", "empty file"),
        "no file": (tmp_path / "missing.png", "no such file"),
        "a folder": (tmp_path, "folder"),
        "text": (b"hello, I am not an image\n", "not an image"),  # kind NOT_AN_IMAGE, checked below
        "truncated png": (full.getvalue()[: len(full.getvalue()) // 2], "truncated"),
        "truncated jpeg": (jpeg.getvalue()[:200], "truncated|corrupt|unreadable"),
        "empty bytes": (b"", "empty"),
    }
    for name, (source, words) in cases.items():
        with pytest.raises(ImageError, match=words) as caught:
            prepare(source)
        assert "\n" not in str(caught.value), name
        assert caught.value.kind == (NOT_AN_IMAGE if name == "text" else UNREADABLE), name


def saved(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_lab_pixels_are_read_by_their_lightness(paper_seven, seven):
    """Pillow converts LAB (and premultiplied 'La') to no other mode: read, not a ValueError from its convert."""
    lab = Image.fromarray(paper_seven).convert("LAB")
    assert correlation(only_glyph(saved(lab, "TIFF")), seven) > 0.8
    assert correlation(only_glyph(lab), seven) > 0.8
    gray = Image.fromarray(paper_seven).convert("L")
    premultiplied = Image.merge("LA", (gray, Image.new("L", gray.size, 255))).convert("La")
    assert correlation(only_glyph(premultiplied), seven) > 0.8


@pytest.mark.parametrize("fmt", ["SPIDER", "TGA", "PCX", "ICO", "PPM", "SGI", "EPS"])
def test_only_the_formats_the_readme_lists_are_opened(paper_seven, fmt):
    """Each format Pillow knows is one more parser facing a stranger's bytes (EPS runs Ghostscript): only PNG,
    JPEG, BMP, GIF, TIFF and WebP are opened, anything else refused in one line that names the format if it can."""
    image = Image.fromarray(paper_seven).convert("L").resize((60, 80))
    if fmt == "EPS":
        data = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 60 80\nshowpage\n"
    else:
        data = saved(image, fmt)
    with pytest.raises(ImageError, match="not an image digitlab reads") as caught:
        prepare(data)
    message = str(caught.value)
    assert caught.value.kind == NOT_AN_IMAGE and "\n" not in message and "PNG, JPEG" in message
    if fmt in ("PCX", "PPM", "EPS"):  # formats whose first bytes say what they are
        assert f"in {fmt} format" in message


def test_ink_of_specks_alone_is_a_reason_not_a_crash(monkeypatch, seven):
    """Ink where every piece is smaller than a stroke leaves no region to read: a reason, in either mode (it was an
    IndexError, and with multi an answer of no digits and no reason)."""
    from digitlab.recognition import glyphs

    monkeypatch.setattr(glyphs, "components",
                        lambda ink: (np.zeros(ink.shape, np.int32), np.zeros(1, np.int32), []))
    for multi in (False, True):
        prepared = prepare(render(seven, style(noise=0.0)), multi=multi)
        assert prepared.glyphs == [] and "specks" in prepared.reason


def test_frames_that_cannot_be_found_are_an_image_error(paper_seven, monkeypatch):
    """A file whose first frame cannot be sought (as a SPIDER image's was: EOFError) is unreadable, one line."""
    def broken_seek(self, frame):
        raise EOFError("attempt to seek in a non-stack file")

    monkeypatch.setattr(Image.Image, "seek", broken_seek)
    with pytest.raises(ImageError, match="first frame") as caught:
        prepare(saved(Image.fromarray(paper_seven), "BMP"))
    assert caught.value.kind == UNREADABLE


def test_inputs_of_no_image_type_are_refused():
    for source in (None, 42, 3.5, [1, 2], object()):
        with pytest.raises(ImageError, match="not an image") as caught:
            prepare(source)
        assert caught.value.kind == NOT_AN_IMAGE


def _png(header: bytes, raw: bytes) -> bytes:
    """A PNG written by hand: the IHDR chunk's ``header``, then the ``raw`` (filtered) rows deflated."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but whose pixel data is a few bytes: what a decompression bomb looks like at first."""
    return _png(struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0), b"\0" * 64)


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="too large") as caught:
        prepare(_png_header_only(100_000, 100_000))
    assert caught.value.kind == TOO_LARGE
    with pytest.raises(ImageError, match="too large") as caught:
        load_image(_png_header_only(3000, 3000), max_pixels=1_000_000)
    assert caught.value.kind == TOO_LARGE


def test_zero_size_image_is_refused():
    with pytest.raises(ImageError):
        prepare(_png_header_only(0, 10))


def test_array_of_wrong_shape_is_refused():
    with pytest.raises(ImageError, match="image array"):
        prepare(np.zeros((3, 4, 5, 6), np.uint8))


# --- several digits -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def year(digits):
    """Real MNIST digits 2, 0, 2, 6 (the first of each in the test set), in that order."""
    images, labels = digits
    return [images[np.nonzero(labels == d)[0][0]] for d in (2, 0, 2, 6)]


def test_a_number_is_read_left_to_right_with_boxes(year):
    drawn = style(width=900, height=300, fill=0.5, noise=3.0)
    prepared = prepare(png(render_number(year, drawn, gap=5)), multi=True)
    assert len(prepared.glyphs) == 4
    xs = [g.box[0] for g in prepared.glyphs]
    assert xs == sorted(xs)
    for left, right in zip(prepared.glyphs, prepared.glyphs[1:]):
        assert left.box[0] + left.box[2] <= right.box[0] + 2  # boxes side by side, not overlapping
    for glyph, original in zip(prepared.glyphs, year):
        assert correlation(glyph.image, original) > 0.75


def test_touching_digits_are_split(year):
    drawn = style(width=900, height=300, fill=0.5, noise=1.0)
    prepared = prepare(png(render_number(year[:2], drawn, gap=-3)), multi=True)  # 2 and 0 written into each other
    assert len(prepared.glyphs) == 2
    assert correlation(prepared.glyphs[0].image, year[0]) > 0.6


def test_pieces_of_a_broken_digit_are_merged(digits):
    images, labels = digits
    five = images[np.nonzero(labels == 5)[0][0]].copy()
    rows = np.nonzero(five.any(axis=1))[0]
    five[rows[0] + 5: rows[0] + 7] = 0  # a gap across the digit: the bar comes off
    page = png(render(five, style(noise=0.0)))
    prepared = prepare(page, multi=True)
    assert len(prepared.glyphs) == 1


def test_single_mode_points_a_number_to_multi_digit_mode(year):
    prepared = prepare(png(render_number(year, style(width=900, fill=0.5))))
    assert prepared.glyphs == [] and "multi-digit mode" in prepared.reason


# --- the rest -----------------------------------------------------------------------------------------------------

def test_normalise_matches_the_training_input(seven):
    batch = normalise(np.stack([seven / 255.0] * 3), mean=0.1307, std=0.3081)
    assert batch.shape == (3, 1, 28, 28) and batch.dtype == np.float32
    assert np.isclose(batch[0, 0, 0, 0], -0.1307 / 0.3081)


def test_preprocess_imports_no_torch():
    code = ("import sys, digitlab.recognition.preprocess, digitlab.recognition.predict, digitlab.recognition.engine, "
            "digitlab.datasets.render; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 7321])
def test_percentiles_are_numpys(size):
    """The partition-only percentiles used on every image must give numpy's numbers exactly, ties and all."""
    from digitlab.recognition.ink import percentiles

    rng = np.random.default_rng(size)
    for values in (rng.random(size).astype(np.float32), np.round(rng.random(size), 1).astype(np.float32),
                   np.zeros(size, np.float32)):
        for q in ([2, 98], [5, 25], [95], [0, 50, 100]):
            assert np.array_equal(percentiles(values, q), np.percentile(values, q)), (values[:5], q)


@pytest.mark.parametrize("shape", [(64, 64), (34, 120), (120, 34), (33, 124), (20, 200), (1, 5)])
def test_odd_reflection_is_numpys(shape):
    """The background's padding, built from OpenCV borders, must be numpy's odd reflection to the bit (and left to
    numpy where the pad is wider than the image)."""
    from digitlab.recognition.ink import _reflect_odd

    image = (np.random.default_rng(0).random(shape) ** 3).astype(np.float32)
    assert np.array_equal(_reflect_odd(image, 33), np.pad(image, 33, mode="reflect", reflect_type="odd"))


def test_the_steps_shown_are_the_ones_taken(seven):
    """prepare(steps=True) keeps the images between the steps, and they add up to the glyph the model reads: the
    fitted digit, put at the recorded corner of 28x28, is the glyph; its longer side is 20; its centre of mass lands
    within half a pixel of the centre. Without steps nothing is kept."""
    from digitlab.recognition.mnist_form import BOX, FIELD
    from digitlab.recognition.preprocess import STEPS

    image = np.full((280, 280), 255, np.uint8)  # drawn as on the page: dark ink on a white canvas
    image[40:240, 40:240] = 255 - cv2.resize(np.asarray(seven, np.uint8), (200, 200))
    prepared = prepare(image, steps=True)
    assert prepared.glyphs and set(prepared.steps) == set(STEPS)
    steps = prepared.steps
    assert steps["gray"].ndim == 2 and steps["ink"].shape == steps["gray"].shape
    assert steps["ink"].max() > 0.9 and np.median(steps["ink"]) < 0.05  # bright ink on dark
    assert 0 <= steps["gray"].min() and steps["gray"].max() <= 1
    fit, (left, top) = steps["fit"], steps["centre"]["corner"]
    assert max(fit.shape) == BOX
    placed = np.zeros((FIELD, FIELD), np.float32)
    placed[top:top + fit.shape[0], left:left + fit.shape[1]] = fit
    np.testing.assert_array_equal(placed, prepared.glyphs[0].image)
    cx, cy = steps["centre"]["mass"]
    assert abs(left + cx - FIELD / 2) <= 0.5 and abs(top + cy - FIELD / 2) <= 0.5
    assert prepare(image).steps is None
    blank = prepare(np.full((100, 100), 255, np.uint8), steps=True)
    assert blank.reason and set(blank.steps) == {"gray", "ink"}
