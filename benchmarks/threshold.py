"""The table the default threshold is read from: at each bar, the share of real digits refused (and read right) per
source, drawn in every case of the other-writer benchmark, beside the share of letters refused.

Each file is read once at threshold 0; a bar t then refuses what was refused already (nothing found, or "not a
digit" surer than any digit) and every answer whose confidence is under t - exactly what `digitlab predict
--threshold t` does. Digits come from the ``choose`` part (the threshold is chosen here, never on ``report``);
letters are ``benchmarks/unsure.py``'s, drawn with another seed. Results: docs/handwriting.md, "The default
threshold".

    python benchmarks/threshold.py                                   # bundled model, 30 digits per source and case
    python benchmarks/threshold.py --model runs/x/model.safetensors --count 60 --letters 20
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from machine import StolenTime, hardware, versions
from unsure import CAPITALS, SMALL

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97)


def read(recognizer, files: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(the digit given at threshold 0 or -1 when refused anyway, its confidence) per file."""
    results = recognizer.predict(files, threshold=0.0)
    digits = np.array([-1 if r.digit is None else r.digit for r in results])
    confidence = np.array([0.0 if r.digit is None else r.confidence for r in results])
    return digits, confidence


def main() -> None:
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer
    from digitlab.datasets.handwriting import SOURCES, drawn, picked
    from digitlab.datasets.handwriting_render import CASES
    from digitlab.datasets.render import render_letters

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a .onnx or .safetensors model (default: the bundled one)")
    parser.add_argument("--count", type=int, default=30, help="digits per source and case (default: %(default)s)")
    parser.add_argument("--letters", type=int, default=10, help="images per letter (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="drawing seed of the digits (default: %(default)s)")
    parser.add_argument("--letters-seed", type=int, default=77, help="drawing seed of the letters, not unsure.py's "
                        "(default: %(default)s)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS, metavar="T",
                        help="the bars to read (default: %(default)s)")
    parser.add_argument("--data-dir", help="MNIST folder (default: $DIGITLAB_DATA)")
    args = parser.parse_args()
    if args.count < 1 or args.letters < 1:
        parser.error("--count and --letters must be at least 1")

    recognizer = Recognizer(load_engine(args.model))
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = {}
    with StolenTime() as stolen:
        for name, letters, typed in (("pen capitals", CAPITALS, False), ("typed capitals", CAPITALS, True),
                                     ("typed small letters", SMALL, True)):
            files = [data for _, data in render_letters(letters, args.letters, seed=args.letters_seed, typed=typed)]
            digits, confidence = read(recognizer, files)
            rows[f"{name} refused"] = [np.mean((digits < 0) | (confidence < t)) for t in args.thresholds]
        for source in SOURCES:
            chosen, labels = picked(source, "choose", args.count, args.seed, args.data_dir)
            files = [data for case in CASES for _, data in drawn(source, case, chosen, args.seed)]
            digits, confidence = read(recognizer, files)
            labels = np.tile(labels, len(CASES))
            rows[f"{source} drawn: refused"] = [np.mean((digits < 0) | (confidence < t)) for t in args.thresholds]
            rows[f"{source} drawn: right"] = [np.mean((digits == labels) & (confidence >= t)) for t in args.thresholds]

    calibration = recognizer.engine.metadata.get("calibration") or {}
    print(f"model: {args.model or 'bundled'}; temperature {recognizer.temperature:.4f}"
          f"{' (fitted on ' + calibration['fitted_on'] + ')' if calibration else ''}; default threshold "
          f"{recognizer.threshold}; choose part, {args.count} digits per source and case (seed {args.seed}); "
          f"{args.letters} of each letter (seed {args.letters_seed}); {time.perf_counter() - started:.0f} s")
    print(f"hardware: {hardware()}\nversions: {versions()}")
    print(f"load average (1, 5, 15 min) before: {' '.join(f'{v:.2f}' for v in load_before)}, after: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {stolen}\n")
    print("| threshold | " + " | ".join(f"{t:g}" for t in args.thresholds) + " |")
    print("|---|" + "---:|" * len(args.thresholds))
    for name, shares in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * s:.1f}" for s in shares) + " |")
    print("\nshares in %; right = answered and right, as a share of all the source's drawings.")


if __name__ == "__main__":
    main()
