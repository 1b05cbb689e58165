"""What reading one large but small-on-disk picture costs ``prepare``: CPU time and peak memory, per kind of picture.

    python benchmarks/large_images.py                                  # this checkout's code
    python benchmarks/large_images.py --against /path/to/other/src     # side by side with another version

A server refuses pictures over 40 million pixels from their header; just under it, a PNG of a drawing compresses to
a couple of hundred kilobytes, so its cost is the decoding and the work on 40 million pixels, not the upload. The
pictures (6300 x 6300 pixels, 39.7 million) are made here: a large 7 on a transparent canvas (RGBA), the same on
opaque white, and a small 7 in a corner of a white page (read again at full size). Each is read by ``prepare`` in
a fresh process, three times in turn per version; the CPU time (user + system) and the peak resident memory that
``prepare`` added (the process's VmHWM) are the medians. Prints the load on the machine and the command. Results:
docs/serving.md, 'Large images'.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SIDE = 6300

MEASURE = """
import json, sys, time
from digitlab.recognition.preprocess import prepare
import pyspng, zlib_ng  # imported by decoding: their cost is start-up, not this picture's

def peak_mib():  # this process's own high-water mark (ru_maxrss would carry the parent's across fork and exec)
    return int(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1]) / 1024

data = open(sys.argv[1], 'rb').read()
before, start = peak_mib(), time.process_time()
prepared = prepare(data)
cpu, after = time.process_time() - start, peak_mib()
print(json.dumps({"cpu": cpu, "added_mib": after - before,
                  "boxes": [list(glyph.box) for glyph in prepared.glyphs], "reason": prepared.reason}))
"""


def make_pictures(folder: Path) -> dict[str, Path]:
    import cv2
    import numpy as np
    from PIL import Image

    def seven(canvas, x, y, size, width):
        cv2.line(canvas, (x, y), (x + size, y), (20, 20, 20, 255), width)
        cv2.line(canvas, (x + size, y), (x + size * 1 // 3, y + size * 11 // 10), (20, 20, 20, 255), width)

    pictures = {}
    transparent = np.zeros((SIDE, SIDE, 4), np.uint8)
    seven(transparent, 1500, 1500, 3300, 300)
    pictures["large 7, transparent RGBA"] = transparent
    opaque = transparent.copy()
    opaque[transparent[..., 3] == 0] = 255
    pictures["large 7, opaque RGBA"] = opaque
    page = np.full((SIDE, SIDE, 3), 255, np.uint8)
    seven(page, 500, 500, 300, 30)
    pictures["small 7 on a page, RGB"] = page
    paths = {}
    for index, (name, pixels) in enumerate(pictures.items()):
        paths[name] = folder / f"{index}.png"
        Image.fromarray(pixels).save(paths[name], optimize=True)
    return paths


def measure(src: str, path: Path) -> dict:
    environment = dict(os.environ, PYTHONPATH=src)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], env=environment, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="SRC", help="another version's src folder, measured in turn with this one")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent / "src")
    versions = {"this": here, **({"against": args.against} if args.against else {})}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        paths = make_pictures(Path(folder))
        print(f"{SIDE}x{SIDE} pixels; files: " + ", ".join(f"{name} {path.stat().st_size / 1000:.0f} kB"
                                                           for name, path in paths.items()))
        print("| picture | version | CPU s | memory added (peak RSS, VmHWM) | boxes |")
        print("|---|---|---|---|---|")
        for name, path in paths.items():
            runs = {version: [] for version in versions}
            for _ in range(args.runs):
                for version, src in versions.items():
                    runs[version].append(measure(src, path))
            for version, results in runs.items():
                cpu = statistics.median(result["cpu"] for result in results)
                added = statistics.median(result["added_mib"] for result in results)
                print(f"| {name} | {version} | {cpu:.2f} | {added:.0f} MiB | {results[0]['boxes']} |")
    print(f"load before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}; "
          f"versions: {versions}")
    print("command:", " ".join([os.path.basename(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
