"""What browsers really send, and how fast each decoder reads it: PNGs made by Chromium's own canvas.toBlob(), and
photos as a phone's camera takes them.

    python benchmarks/browser_pngs.py                       # 200 digits, best of 5 passes per decoder
    python benchmarks/browser_pngs.py --count 500 --repeat 7 --photos 20

MNIST test digits are drawn as dark ink on the page's white 280x280 canvas, in Debian's Chromium (/usr/bin/chromium,
headless, through Playwright, no network), and taken from it as the page takes them: ``canvas.toBlob(...,
"image/png")``. Chromium writes such PNGs with its fastest compression (zlib header 78 01), unlike Pillow's level 6
(78 9c) that the load test posted before; the same digits saved by Pillow are measured beside them.

Each decoder reads every PNG to a uint8 array, and the pixels are checked equal to Pillow's:
    pyspng              libspng alone
    digitlab decode     recognition.decode.decode(), the path every upload takes
    ..., no chunk walker    the same with decode._stored_png switched off: libspng inflates the PNG itself
    Pillow              Image.open + numpy.asarray
    cv2.imdecode        OpenCV, IMREAD_UNCHANGED
Phone photos (``--photos``, 0 to skip): 4032x3024 JPEGs at quality 90, a digit written on uneven, grainy paper, stored
sideways with EXIF orientation 6 as phone cameras store a portrait shot. Each decoder gives upright pixels: digitlab's
path (Pillow's draft mode decodes at the working size, then EXIF), Pillow decoding whole, OpenCV decoding whole and at
1/8 (``IMREAD_REDUCED_COLOR_8``; both apply EXIF orientation themselves).

The time per image is this process's CPU time (not the wall clock, which on a busy machine counts other programs'
turns too), the best of ``--repeat`` passes over all of them, with the median pass beside it; the decoders take
turns pass by pass, so a busy moment falls on all of them. ``load.py`` posts the same browser PNGs
(``browser_canvas_pngs``).
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from machine import StolenTime, hardware, versions

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# The digit is drawn as the page would hold it: ink 200x200 on the 280x280 white canvas, opaque.
DRAW = """async ([digits, side]) => {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 280;
    const ctx = canvas.getContext('2d');
    const out = [];
    for (const digit of digits) {
        const bytes = Uint8Array.from(atob(digit), (c) => c.charCodeAt(0));
        const small = new ImageData(side, side);
        for (let i = 0; i < side * side; i++) {
            const v = 255 - bytes[i];
            small.data.set([v, v, v, 255], 4 * i);
        }
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, 280, 280);
        ctx.drawImage(await createImageBitmap(small), 40, 40, 200, 200);
        const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
        const data = new Uint8Array(await blob.arrayBuffer());
        let text = '';
        for (let i = 0; i < data.length; i += 8192) text += String.fromCharCode(...data.subarray(i, i + 8192));
        out.push(btoa(text));
    }
    return out;
}"""


def mnist_digits(count: int) -> np.ndarray:
    from digitlab.datasets.mnist import read_mnist

    images, _ = read_mnist("test")
    return images[:count]  # (N, 28, 28) uint8, bright ink on dark


def browser_canvas_pngs(count: int) -> list[bytes]:
    """``count`` MNIST test digits as Chromium's canvas.toBlob() encodes them (RuntimeError without Chromium)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is not installed (apt-get install chromium): it makes the browser's PNGs")
    from playwright.sync_api import sync_playwright

    digits = [base64.b64encode(d.tobytes()).decode() for d in mnist_digits(count)]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        encoded = page.evaluate(DRAW, [digits, 28])
        browser.close()
    return [base64.b64decode(text) for text in encoded]


def pillow_canvas_pngs(count: int) -> list[bytes]:
    """The same canvases saved by Pillow at its default level, as the load test made them before."""
    from PIL import Image

    pngs = []
    for digit in mnist_digits(count):
        canvas = Image.new("L", (280, 280), 0)
        canvas.paste(Image.fromarray(digit).resize((200, 200), Image.BILINEAR), (40, 40))
        gray = 255 - np.asarray(canvas)
        buffer = io.BytesIO()
        Image.fromarray(np.dstack([gray, gray, gray, np.full_like(gray, 255)]), "RGBA").save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    return pngs


def phone_photos(count: int) -> list[bytes]:
    """``count`` 12-megapixel camera JPEGs of MNIST digits on paper, stored sideways with EXIF orientation 6."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = []
    for digit in mnist_digits(count):
        height, width = 4032, 3024  # upright portrait
        light = np.linspace(150, 215, width, dtype=np.float32)[None, :] + np.linspace(0, 25, height)[:, None]
        ink = cv2.resize(digit, (1800, 1800), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
        page = np.repeat(light[..., None], 3, axis=2)
        y, x = 1100, 600
        page[y:y + 1800, x:x + 1800] *= 1 - 0.8 * ink[..., None]
        page += rng.normal(0, 6, page.shape).astype(np.float32)  # sensor grain
        upright = np.clip(page * [1.0, 0.97, 0.9], 0, 255).astype(np.uint8)
        stored = np.rot90(upright, 1)  # what orientation 6 (turn 90 degrees clockwise to view) stores
        exif = Image.Exif()
        exif[0x0112] = 6
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(stored)).save(buffer, "JPEG", quality=90, exif=exif)
        photos.append(buffer.getvalue())
    return photos


def measure_photos(photos: list[bytes], repeat: int) -> dict[str, tuple[float, float, str]]:
    """Decoder name -> (best, median) CPU milliseconds per photo, and the size of the upright pixels it gives."""
    import cv2
    from PIL import Image, ImageOps

    from digitlab.recognition.decode import decode

    def with_digitlab(data):
        pixels, _ = decode(data)
        return np.asarray(pixels)

    def with_pillow(data):
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(ImageOps.exif_transpose(image))

    def with_cv2(flag):
        return lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), flag)

    found = {"digitlab decode (draft)": with_digitlab, "Pillow, whole": with_pillow,
             "cv2.imdecode, whole": with_cv2(cv2.IMREAD_COLOR),
             "cv2.imdecode, 1/8": with_cv2(cv2.IMREAD_REDUCED_COLOR_8)}
    sizes = {}
    for name, decoder in found.items():
        pixels = decoder(photos[0])
        assert pixels.shape[0] > pixels.shape[1], f"{name} does not turn the photo upright"
        sizes[name] = f"{pixels.shape[1]}x{pixels.shape[0]}"
    passes = {name: [] for name in found}
    for _ in range(repeat):
        for name, decoder in found.items():
            start = time.process_time()
            for data in photos:
                decoder(data)
            passes[name].append((time.process_time() - start) / len(photos) * 1000)
    return {name: (min(times), statistics.median(times), sizes[name]) for name, times in passes.items()}


def zlib_header(png: bytes) -> str:
    at = png.index(b"IDAT") + 4
    return png[at:at + 2].hex(" ")


def decoders():
    import cv2
    import pyspng
    from PIL import Image

    from digitlab.recognition.decode import decode

    def with_pillow(data):
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image)

    def with_digitlab(data):
        pixels, _ = decode(data)
        return pixels if isinstance(pixels, np.ndarray) else np.asarray(pixels)

    def without_walker(data):  # the same path with the PNG chunk walker (decode._stored_png) switched off
        from digitlab.recognition import decode as module

        ahead, module.INFLATE_AHEAD_PIXELS = module.INFLATE_AHEAD_PIXELS, 0
        try:
            return with_digitlab(data)
        finally:
            module.INFLATE_AHEAD_PIXELS = ahead

    def with_cv2(data):
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA) if pixels.ndim == 3 and pixels.shape[2] == 4 else pixels

    return {"pyspng": pyspng.load, "digitlab decode": with_digitlab, "digitlab decode, no chunk walker":
            without_walker, "Pillow": with_pillow, "cv2.imdecode": with_cv2}


def measure(pngs: list[bytes], repeat: int) -> dict[str, tuple[float, float]]:
    """Decoder name -> (best, median) CPU milliseconds per image; every decoder's pixels checked against Pillow's."""
    found = decoders()
    reference = [found["Pillow"](data) for data in pngs]
    for name, decoder in found.items():
        for data, expected in zip(pngs, reference):
            assert np.array_equal(decoder(data), expected), f"{name} decodes other pixels than Pillow"
    passes = {name: [] for name in found}
    for _ in range(repeat):  # the decoders take turns, so a busy moment on the machine falls on all of them
        for name, decoder in found.items():
            start = time.process_time()
            for data in pngs:
                decoder(data)
            passes[name].append((time.process_time() - start) / len(pngs) * 1000)
    return {name: (min(times), statistics.median(times)) for name, times in passes.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="digits (default: 200)")
    parser.add_argument("--repeat", type=int, default=5, help="passes per decoder; the best is reported (default: 5)")
    parser.add_argument("--photos", type=int, default=10, help="phone photos, 0 to skip (default: 10)")
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)  # as the server's workers run
    sets = {"Chromium canvas.toBlob": browser_canvas_pngs(args.count), "Pillow level 6": pillow_canvas_pngs(args.count)}
    print(f"{hardware()}\n{versions()}\ncommand: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    with StolenTime() as stolen:
        results = {name: measure(pngs, args.repeat) for name, pngs in sets.items()}
    for name, pngs in sets.items():
        headers = sorted({zlib_header(p) for p in pngs})
        print(f"{name}: {len(pngs)} PNGs of 280x280, {np.mean([len(p) for p in pngs]) / 1000:.1f} kB on average, "
              f"zlib header {', '.join(headers)}")
    print(f"\n| decoder | {' | '.join(sets)} |\n|---|{'---|' * len(sets)}")
    for decoder in results[next(iter(sets))]:
        cells = [f"{results[name][decoder][0]:.3f} ms ({results[name][decoder][1]:.3f})" for name in sets]
        print(f"| {decoder} | {' | '.join(cells)} |")
    print(f"\nCPU time per image, best of {args.repeat} passes (median pass in brackets); {stolen}")
    if args.photos:
        photos = phone_photos(args.photos)
        with StolenTime() as stolen:
            timed = measure_photos(photos, args.repeat)
        print(f"\n{len(photos)} phone photos, 4032x3024 stored sideways (EXIF orientation 6), "
              f"{np.mean([len(p) for p in photos]) / 1e6:.2f} MB on average\n\n"
              f"| decoder | upright pixels | CPU per photo |\n|---|---|---|")
        for name, (best, median, size) in timed.items():
            print(f"| {name} | {size} | {best:.1f} ms ({median:.1f}) |")
        print(f"\nbest of {args.repeat} passes (median pass in brackets); {stolen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
