"""How often ``digitlab predict`` refuses what is not a digit, next to how often it refuses real digits.

Letters go through the Recognizer exactly as users' files do, drawn like the rendered digits (paper, ink colour,
uneven light, noise, PNG/JPEG): pen-written capitals (``render.render_letters``: the same pen model the bundled
network's "not a digit" class learnt from, other draws), and letters typed in Pillow's own font, capitals and small
letters - a source the network never saw. Beside them: real MNIST test digits redrawn as people supply them
(``render.render_set``), whose refusals are the price paid.

    python benchmarks/unsure.py                                   # bundled model, 20 of each letter, 1000 digits
    python benchmarks/unsure.py --model runs/x/model.safetensors --count 40 --digits 2000 --threshold 0.7
"""

from __future__ import annotations

import argparse
import platform
from collections import Counter

import numpy as np

CAPITALS = "ABCDEFGHJKLMNPQRSTUVWXYZ"   # I and O are written as 1 and 0
SMALL = "abcdefghjkmnpqrstuvwxyz"        # l and i are 1s, o is a 0


def refusals(recognizer, name: str, letters: list[tuple[str, bytes]]) -> float:
    """Print one row per letter (share refused, what was answered otherwise); return the share over all."""
    answers = recognizer.predict([data for _, data in letters])
    print(f"\n{name}\n{'letter':<8}{'refused':>8}  answers given (digit x count)")
    refused_all = []
    for letter in dict.fromkeys(letter for letter, _ in letters):
        mine = [a for (l, _), a in zip(letters, answers) if l == letter]
        refused = [a.digit is None for a in mine]
        refused_all += refused
        given = Counter(a.digit for a in mine if a.digit is not None).most_common(3)
        print(f"{letter:<8}{np.mean(refused):>8.0%}  " + " ".join(f"{d}x{n}" for d, n in given))
    print(f"{'all':<8}{np.mean(refused_all):>8.1%}  (n={len(refused_all)})")
    return float(np.mean(refused_all))


def main() -> None:
    from digitlab.training.data import load_mnist
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer
    from digitlab.datasets.render import render_letters, render_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a checkpoint (default: the bundled model)")
    parser.add_argument("--count", type=int, default=20, help="images per letter")
    parser.add_argument("--digits", type=int, default=1000, help="rendered MNIST test digits")
    parser.add_argument("--threshold", type=float, default=None, help="(default: the model's)")
    parser.add_argument("--seed", type=int, default=1001, help="drawing seed (training pools use seeds 0-2)")
    args = parser.parse_args()

    recognizer = Recognizer(load_engine(args.model), threshold=args.threshold)
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"model {args.model or 'bundled'}, threshold {recognizer.threshold}, seed {args.seed}")
    summary = {
        "pen capitals": refusals(recognizer, "pen-written capitals (the pen model trained on, other draws)",
                                 render_letters(CAPITALS, args.count, seed=args.seed)),
        "typed capitals": refusals(recognizer, "typed capitals (Pillow's font: never seen in training)",
                                   render_letters(CAPITALS, args.count, seed=args.seed, typed=True)),
        "typed small": refusals(recognizer, "typed small letters (never seen in training)",
                                render_letters(SMALL, args.count, seed=args.seed, typed=True)),
    }

    images, labels = load_mnist("test")
    files = [data for data, _ in render_set(images[:args.digits].numpy(), seed=args.seed)]
    results = recognizer.predict(files)
    refused = np.mean([r.digit is None for r in results])
    not_digit = np.mean([(r.reason or "").startswith("not a digit") for r in results])
    wrong = np.mean([r.digit is not None and r.digit != int(y) for r, y in zip(results, labels[:args.digits])])
    print("\nsummary: " + ", ".join(f"{k} refused {v:.1%}" for k, v in summary.items()))
    print(f"rendered MNIST test digits: {refused:.1%} refused ({not_digit:.1%} as 'not a digit'), "
          f"{wrong:.1%} answered wrongly (n={args.digits})")


if __name__ == "__main__":
    main()
