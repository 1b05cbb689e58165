"""Accuracy on digits as people supply them: the tutorial pipeline (invert if needed, resize to 28x28) against
digitlab's preprocessing, on the same rendered images, next to the model's accuracy on raw MNIST.

The images are real MNIST test digits redrawn by ``digitlab.datasets.render`` (large canvases, dark-on-light and
light-on-dark, off centre, uneven light, noise, JPEG, colour, markers), so each one has its true label.

    python benchmarks/own_images.py                          # bundled model, all 10,000 test digits
    python benchmarks/own_images.py --model runs/x/model.safetensors --count 2000
"""

from __future__ import annotations

import argparse
import io
import time
from collections import defaultdict

import numpy as np
from PIL import Image

from machine import hardware, versions


def naive_resize(data: bytes) -> np.ndarray:
    """The tutorials' "apply it to your own picture" step: gray, invert if the paper is light, resize to 28x28."""
    gray = Image.open(io.BytesIO(data)).convert("L")
    pixels = np.asarray(gray.resize((28, 28), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    return 1.0 - pixels if pixels.mean() > 0.5 else pixels


def conditions(style) -> list[str]:
    """The groups one rendered image belongs to, for the per-condition table."""
    groups = [style.polarity, "jpeg" if style.jpeg_quality else "png"]
    groups.append("marker" if style.marker > 0 else "pen")
    groups.append("fill<50%" if style.fill < 0.5 else "fill>=50%")
    groups.append("uneven light>0.3" if style.lighting > 0.3 else "light<=0.3")
    groups.append("noise>5" if style.noise > 5 else "noise<=5")
    return groups


def main() -> None:
    from digitlab.datasets.mnist import read_mnist
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.facts import default_threshold
    from digitlab.recognition.predict import Recognizer
    from digitlab.datasets.render import render_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint (default: the bundled model)")
    parser.add_argument("--count", type=int, default=10000, help="how many test digits to render")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    engine = load_engine(args.model)
    recognizer = Recognizer(engine, threshold=0.0)
    images, labels = read_mnist("test", args.data_dir)

    raw = recognizer.probabilities(images.astype(np.float32) / 255.0).argmax(1)
    raw_correct = raw == labels
    start = time.perf_counter()
    naive_correct, ours_correct, ours_confidence, groups = [], [], [], []
    chunk = 250
    for first in range(0, args.count, chunk):  # rendered files are large; keep a few hundred in memory at a time
        digits = images[first:min(first + chunk, args.count)]
        truth = labels[first:first + len(digits)]
        rendered = render_set(digits, seed=args.seed * 100_000 + first)
        naive = recognizer.probabilities(np.stack([naive_resize(data) for data, _ in rendered])).argmax(1)
        naive_correct.extend(naive == truth)
        for prediction, label in zip(recognizer.predict([data for data, _ in rendered]), truth):
            best = prediction.digits[0].top3[0][0] if prediction.digits else -1
            ours_correct.append(best == label)
            ours_confidence.append(prediction.confidence or 0.0)
        groups.extend(conditions(style) for _, style in rendered)
    elapsed = time.perf_counter() - start
    count = len(ours_correct)
    naive_correct, ours_correct = np.array(naive_correct), np.array(ours_correct)
    ours_confidence = np.array(ours_confidence)
    raw_subset = raw_correct[:count]

    arch = engine.metadata.get("arch", "?")
    print(f"model: {args.model or 'bundled'} ({arch}); {count} rendered MNIST test digits, seed {args.seed}; "
          f"{elapsed:.0f} s")
    print(f"hardware: {hardware()}\nversions: {versions()}")
    print()
    print(f"{'pipeline':<42}{'accuracy':>9}")
    print(f"{'raw MNIST test images (all 10,000)':<42}{raw_correct.mean():>9.2%}")
    print(f"{'raw MNIST, the same digits':<42}{raw_subset.mean():>9.2%}")
    print(f"{'rendered, naive resize (tutorial)':<42}{naive_correct.mean():>9.2%}")
    print(f"{'rendered, digitlab preprocess':<42}{ours_correct.mean():>9.2%}")
    gap = 100 * (raw_subset.mean() - ours_correct.mean())
    print(f"gap to raw MNIST on the same digits: {gap:+.2f} points (target: within 0.5)")
    lost = int((raw_subset & ~ours_correct).sum())
    gained = int((~raw_subset & ours_correct).sum())
    print(f"digits right on raw MNIST but wrong rendered: {lost}; the other way round: {gained}")
    threshold = default_threshold(engine.metadata)
    accepted = ours_confidence >= threshold
    print(f"at the model's default threshold {threshold}: {accepted.mean():.2%} answered, "
          f"{ours_correct[accepted].mean():.2%} of those right")
    print()
    by_group = defaultdict(list)
    for index, names in enumerate(groups):
        for name in names:
            by_group[name].append(index)
    print(f"{'condition':<20}{'images':>8}{'raw':>9}{'naive':>9}{'ours':>9}")
    for name in sorted(by_group):
        idx = np.array(by_group[name])
        print(f"{name:<20}{len(idx):>8}{raw_subset[idx].mean():>9.2%}{naive_correct[idx].mean():>9.2%}"
              f"{ours_correct[idx].mean():>9.2%}")


if __name__ == "__main__":
    main()
