"""Bytes, a path, an array or a PIL image -> upright pixels, then gray: the first two steps of reading an image.

The size is checked from the header before a byte of pixel data is decoded (a small PNG can declare billions of
pixels); EXIF orientation is applied; plain PNGs are decoded by libspng into an array, everything else by Pillow.
``to_gray`` turns any mode (alpha, palette, 16-bit, CMYK, colour) into float brightness in [0, 1]. Every failure
is an ``ImageError`` with a one-line reason and a ``kind`` a caller can answer differently (the API: 413/415/422).
What each decoder was measured to cost: docs/serving.md, 'Where a request's CPU goes'.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digitlab.errors import one_line
from digitlab.recognition.facts import IMAGE_FORMATS, MAX_PIXELS

WORK_SIDE = 256              # the size preprocessing works at; a JPEG is decoded no larger than it needs
INFLATE_AHEAD_PIXELS = 4_000_000   # a plain PNG up to this size is inflated by zlib-ng first (`_stored_png`); a
                                   # larger one would hold its pixels twice more in memory, so libspng inflates it
PNG_CHUNK, STORED_BLOCK = struct.Struct(">I4s"), struct.Struct("<BHH")  # length and type; final flag, LEN, NLEN


UNREADABLE, NOT_AN_IMAGE, TOO_LARGE = "unreadable", "not an image", "too large"  # the kinds of ImageError

FORMATS = tuple(image_format.pillow for image_format in IMAGE_FORMATS)  # facts.IMAGE_FORMATS: the only ones opened
FORMAT_NAMES = f"{', '.join(f.name for f in IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1].name}"


class ImageError(ValueError):
    """A file that cannot be read as an image. The message is one line that says why; ``kind`` is one of
    ``UNREADABLE`` (corrupt, truncated, empty, missing), ``NOT_AN_IMAGE`` and ``TOO_LARGE``, for callers that
    answer each differently (the API: 422, 415, 413)."""

    def __init__(self, message: str, kind: str = UNREADABLE):
        super().__init__(message)
        self.kind = kind


# --- 1. decode ----------------------------------------------------------------------------------------------------

def load_image(source, max_pixels: int = MAX_PIXELS, work_side: int = WORK_SIDE) -> tuple[Image.Image, float]:
    """``decode``, as a PIL image whatever the source (for drawing the picture, not reading it)."""
    pixels, scale = decode(source, max_pixels, work_side)
    return (Image.fromarray(pixels) if isinstance(pixels, np.ndarray) else pixels), scale


def decode(source, max_pixels: int = MAX_PIXELS,
           work_side: int = WORK_SIDE) -> tuple[np.ndarray | Image.Image, float]:
    """Open ``source`` (a path, bytes, a numpy array or a PIL image) and decode its pixels, upright.

    Returns the pixels and the factor from them to the original's (JPEGs are decoded at reduced size when the
    working size needs no more, which is most of the decoding time saved). The pixels are a uint8 array (H, W) or
    (H, W, C) where they come as one - a plain PNG, an array - and a PIL image otherwise; ``to_gray`` takes both.
    Raises ImageError with a one-line reason.
    """
    if isinstance(source, Image.Image):
        if source.width == 0 or source.height == 0:
            raise ImageError(f"zero-size image ({source.width}x{source.height} pixels)")
        try:
            return ImageOps.exif_transpose(source), 1.0
        except (OSError, ValueError, TypeError, KeyError, SyntaxError, EOFError):  # broken EXIF or pixel data
            try:
                source.load()
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                raise ImageError(f"corrupt or truncated image data ({one_line(exc)})") from None
            return source, 1.0
    if isinstance(source, np.ndarray):
        return _array_to_uint8(source), 1.0
    image = _open(source)
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageError(f"zero-size image ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} pixels is over the limit of {max_pixels:,} "
                         f"(a decompression bomb?)", TOO_LARGE)
    try:
        image.seek(0)  # an animated GIF or a multi-page TIFF: the first frame
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt image: its first frame cannot be found ({one_line(exc)})") from None
    fast = _decode_plain_png(image, source)
    if fast is not None:  # nothing to turn upright: a plain PNG has no EXIF
        return fast, 1.0
    if image.format == "JPEG":
        reduce = work_side / (width * height) ** 0.5
        image.draft(image.mode if image.mode in ("L", "RGB") else None,
                    (max(1, int(width * reduce)), max(1, int(height * reduce))))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise ImageError(f"corrupt or truncated image data ({one_line(exc)})") from None
    scale = width / image.size[0]
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, TypeError, KeyError):  # broken EXIF: keep the pixels as stored
        pass
    return image, scale


def _decode_plain_png(image: Image.Image, source) -> np.ndarray | None:
    """The pixels of a plain 8-bit PNG (gray or colour, with or without alpha) decoded by libspng, which is much
    quicker at it than Pillow's decoder (`_stored_png` inflates them first; measured: docs/serving.md, 'Where a
    request's CPU goes'); None where Pillow is to decode: another format, palette or 16-bit pixels, a transparent
    colour key, EXIF (which may turn the image), or data libspng refuses (Pillow then words the error). Of an
    animated PNG both read the default image."""
    if image.format != "PNG" or image.mode not in ("L", "LA", "RGB", "RGBA") or "transparency" in image.info:
        return None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:  # the file Pillow already holds open, read whole from the start (Pillow seeks where it needs if it decodes)
        image.fp.seek(0)
        data = image.fp.read()
    if b"eXIf" in data or b"Raw profile type exif" in data:
        return None
    import pyspng  # imported here: loading images must not cost a library's import until one is decoded

    if image.size[0] * image.size[1] <= INFLATE_AHEAD_PIXELS:
        data = _stored_png(data) or data
    try:
        pixels = pyspng.load(data, image.mode)
    except Exception:  # noqa: BLE001 - any refusal: Pillow decodes it again and says what is wrong
        return None
    if pixels.dtype != np.uint8 or pixels.shape[:2] != (image.size[1], image.size[0]):
        return None
    image.close()  # Pillow will not decode it, so nothing else would close its file
    return pixels


def _stored_png(data: bytes) -> bytes | None:
    """The same PNG with its image data inflated by zlib-ng and stored uncompressed, or None where the file is not
    a whole, intact PNG (libspng and Pillow then read the original and say what is wrong with it).

    Inflating with the zlib it was built with is most of libspng's time on a canvas, and zlib-ng inflates the same
    stream several times faster; libspng then only copies the stored blocks and undoes the PNG filters, and the
    pixels are the same (measured: docs/serving.md, 'Where a request's CPU goes'). Other chunks (text, colour
    profiles) are left out: neither decoder applies them to the pixels.
    """
    from zlib_ng import zlib_ng  # imported here, as pyspng is

    chunks, view, position = {}, memoryview(data), 8
    while position + 12 <= len(data):
        size, kind = PNG_CHUNK.unpack_from(data, position)
        end = position + 12 + size
        if end > len(data) or zlib_ng.crc32(view[position + 4:end - 4]) != int.from_bytes(view[end - 4:end]):
            return None
        chunks.setdefault(kind, []).append(view[position:end])
        if kind == b"IEND":
            break
        position = end
    if b"IEND" not in chunks or len(chunks.get(b"IHDR", ())) != 1 or b"IDAT" not in chunks:
        return None
    width, height, depth, colour = struct.unpack_from(">IIBB", chunks[b"IHDR"][0], 8)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour, 4)
    # what the header's size allows (interlaced rows included), so a small image cannot inflate to gigabytes
    most = height * (-(-width * channels * depth // 8) + 4) + 64
    inflater = zlib_ng.decompressobj()
    try:
        raw = memoryview(inflater.decompress(b"".join(chunk[8:-4] for chunk in chunks[b"IDAT"]), most))
    except zlib_ng.error:
        return None
    if not inflater.eof:  # truncated, or more than the image can hold
        return None
    stream = [b"\x78\x01"]  # zlib header: deflate, 32 KiB window; then stored blocks of at most 65,535 bytes
    for start in range(0, len(raw), 65535):
        block = raw[start:start + 65535]
        stream += [STORED_BLOCK.pack(start + 65535 >= len(raw), len(block), 0xFFFF ^ len(block)), block]
    stream.append(zlib_ng.adler32(raw).to_bytes(4))
    crc = zlib_ng.crc32(b"IDAT")
    for part in stream:
        crc = zlib_ng.crc32(part, crc)
    return b"".join([data[:8], chunks[b"IHDR"][0], sum(map(len, stream)).to_bytes(4), b"IDAT", *stream,
                     crc.to_bytes(4), chunks[b"IEND"][0]])


def _open(source) -> Image.Image:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty data (0 bytes)")
        stream, name = io.BytesIO(bytes(source)), "data"
    elif not isinstance(source, (str, os.PathLike)):
        raise ImageError(f"not an image: a {type(source).__name__} (give a path, bytes, a numpy array or a PIL "
                         f"image)", NOT_AN_IMAGE)
    else:
        try:
            path = Path(os.fspath(source))
        except (TypeError, ValueError) as exc:
            raise ImageError(f"not a usable path ({one_line(exc)})", NOT_AN_IMAGE) from None
        if not path.exists():
            raise ImageError("no such file")
        if path.is_dir():
            raise ImageError("is a folder, not an image file")
        if not path.is_file():
            raise ImageError("not a regular file (a FIFO, socket or device): not read")
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
        stream, name = path, "file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(stream, formats=FORMATS)
    except UnidentifiedImageError:
        other = _other_format(source if name == "data" else path)
        what = f"the {name} is in {other} format" if other else f"the {name} is in no format it knows"
        raise ImageError(f"not an image digitlab reads: {what}; send {FORMAT_NAMES}", NOT_AN_IMAGE) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image too large (a decompression bomb?): {one_line(exc)}", TOO_LARGE) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"unreadable image ({one_line(exc)})") from None


def _other_format(source) -> str | None:
    """The format of an image in a format digitlab does not open, named from its first bytes by Pillow's signature
    checks alone (no parser runs), for the message that refuses it; None where no signature matches."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            prefix = bytes(source[:16])
        else:
            with open(source, "rb") as file:
                prefix = file.read(16)
    except OSError:
        return None
    Image.init()
    for format_name, (_, accept) in Image.OPEN.items():
        try:
            if format_name not in FORMATS and accept is not None and accept(prefix):
                return format_name
        except Exception:  # noqa: BLE001 - a signature check that trips on short data matches nothing
            continue
    return None


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or array.size == 0:
        raise ImageError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), not {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):  # floats are read as brightness in [0, 1]
        return (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if array.dtype == np.uint16:
        return (array // 257).astype(np.uint8)
    raise ImageError(f"unsupported image array type {array.dtype}")


# --- 2. grayscale -------------------------------------------------------------------------------------------------

def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any PIL mode, or a uint8 array (H, W) or (H, W, 2 | 3 | 4) -> float32 (H, W) brightness in [0, 1].
    Transparent areas become a background the ink stands out on: whatever contrasts with the visible drawing (a
    drawing app saves dark ink on a transparent canvas as often as white ink on one; putting the ink on white in the
    first case and on black in the second keeps it visible either way).

    The float image is written a band of rows at a time, so a large picture needs the one float copy it returns
    and no full-size temporaries besides (measured: docs/serving.md, 'Large images')."""
    if isinstance(image, Image.Image):
        image = _pil_to_array(image)
        if image.dtype != np.uint8:
            return _high_depth_to_gray(image)
    # OpenCV on the array, not a round trip through Pillow's getchannel, getextrema and convert: the cheaper way
    # on a canvas (measured: docs/serving.md, 'Where a request's CPU goes')
    channels = 1 if image.ndim == 2 else image.shape[2]
    transparent = channels in (2, 4) and cv2.minMaxLoc(cv2.extractChannel(image, channels - 1))[0] < 255
    height, width = image.shape[:2]
    gray = np.empty((height, width), np.float32)
    bands = [slice(top, top + max(1, BAND_PIXELS // width)) for top in range(0, height, max(1, BAND_PIXELS // width))]
    covered = visible = 0.0
    for band in bands:
        np.divide(_luma(image[band]), np.float32(255.0), out=gray[band])
        if transparent:  # opaque pictures (a canvas, most PNGs) are read as the same picture without alpha would be
            alpha = _opacity(image[band])
            gray[band] *= alpha  # the ink as much as it shows ...
            covered += cv2.sumElems(gray[band])[0]  # in float64
            visible += cv2.sumElems(alpha)[0]
    if transparent and (covered / visible if visible > 0 else 0.0) < 0.5:  # ... on white behind a dark drawing
        for band in bands:
            gray[band] += 1.0 - _opacity(image[band])
    return gray


BAND_PIXELS = 2**20  # pixels in one band of rows that ``to_gray`` converts at a time


def _opacity(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 2 | 4) -> float32 (H, W): the last channel, alpha, in [0, 1]."""
    return cv2.extractChannel(pixels, pixels.shape[2] - 1) / np.float32(255.0)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> uint8 (H, W), (H, W, 2) or (H, W, 3 | 4), or the raw values of a 16-bit, 32-bit
    or float one. A mode Pillow cannot turn into gray is an ImageError, not its ValueError."""
    try:
        if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            return np.asarray(image)
        if image.mode == "P":
            return np.asarray(image.convert("RGBA" if "transparency" in image.info else "RGB"))
        if image.mode == "LAB":  # the L channel is the lightness, a gray already; Pillow converts LAB to nothing
            return np.asarray(image.getchannel("L"))
        if image.mode == "La":  # gray premultiplied by its alpha, which Pillow converts to nothing: undo it
            values = np.asarray(image).astype(np.float32)
            alpha = values[..., 1]
            values[..., 0] = np.where(alpha > 0, np.minimum(values[..., 0] * 255 / np.maximum(alpha, 1), 255), 0)
            return (values + 0.5).astype(np.uint8)
        if image.mode in ("PA", "RGBa"):
            return np.asarray(image.convert("RGBA"))
        if image.mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK, YCbCr, 1-bit: Pillow's luminance
            image = image.convert("L")
        return np.asarray(image)
    except (ValueError, OSError, TypeError, SyntaxError, EOFError) as exc:
        raise ImageError(f"pixels of mode {image.mode} cannot be read as gray ({one_line(exc)})") from None


def _luma(pixels: np.ndarray) -> np.ndarray:
    """uint8 gray (H, W), gray and alpha (H, W, 2), RGB or RGBA -> uint8 luminance (H, W) (ITU-R 601 weights, as
    Pillow's "L"); alpha ignored."""
    if pixels.ndim == 3:
        channels = pixels.shape[2]
        pixels = (pixels[..., 0] if channels == 2 else
                  cv2.cvtColor(pixels, cv2.COLOR_RGBA2GRAY if channels == 4 else cv2.COLOR_RGB2GRAY))
    return pixels


def _high_depth_to_gray(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float32)
    top = float(values.max()) if values.size else 0.0
    full_scale = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0 if top <= 65535.0 else top
    return np.clip(values / full_scale, 0.0, 1.0)
