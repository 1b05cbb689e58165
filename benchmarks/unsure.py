"""How often ``digitlab predict`` refuses what is not a digit, next to how often it refuses real digits.

Pen-written capital letters (``render.render_letters``) and real MNIST test digits redrawn as people supply them
(``render.render_set``) go through the Recognizer exactly as users' files do. A 10-class softmax has no "none of
these": this prints, per letter, the share answered with ``digit: null`` and what the model guessed otherwise.

    python benchmarks/unsure.py                                   # bundled model, 20 of each letter, 500 digits
    python benchmarks/unsure.py --model runs/x/model.safetensors --count 40 --digits 2000 --threshold 0.7
"""

from __future__ import annotations

import argparse
import platform
from collections import Counter

import numpy as np

LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def main() -> None:
    from digitlab.data import load_mnist
    from digitlab.engine import load_engine
    from digitlab.predict import DEFAULT_THRESHOLD, Recognizer
    from digitlab.render import render_letters, render_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a checkpoint (default: the bundled model)")
    parser.add_argument("--count", type=int, default=20, help="images per letter")
    parser.add_argument("--digits", type=int, default=500, help="rendered MNIST test digits")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    recognizer = Recognizer(load_engine(args.model), threshold=args.threshold)
    letters = render_letters(LETTERS, args.count, seed=args.seed)
    answers = recognizer.predict([data for _, data in letters])
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"model {args.model or 'bundled'}, threshold {args.threshold}")
    print(f"{'letter':<8}{'refused':>8}  answers given (digit x count)")
    refused_all = []
    for letter in LETTERS:
        mine = [a for (l, _), a in zip(letters, answers) if l == letter]
        refused = [a.digit is None for a in mine]
        refused_all += refused
        given = Counter(a.digit for a in mine if a.digit is not None).most_common(3)
        print(f"{letter:<8}{np.mean(refused):>8.0%}  " + " ".join(f"{d}x{n}" for d, n in given))
    print(f"{'letters':<8}{np.mean(refused_all):>8.0%}")

    images, labels = load_mnist("test")
    files = [data for data, _ in render_set(images[:args.digits].numpy(), seed=args.seed)]
    results = recognizer.predict(files)
    refused = np.mean([r.digit is None for r in results])
    wrong = np.mean([r.digit is not None and r.digit != int(y) for r, y in zip(results, labels[:args.digits])])
    print(f"rendered MNIST test digits: {refused:.1%} refused, {wrong:.1%} answered wrongly (n={args.digits})")


if __name__ == "__main__":
    main()
