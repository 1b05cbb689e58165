"""Images that are no digit, in MNIST's form: what a network learns to answer "not a digit" from.

A network with ten outputs must name a digit for anything it is shown; a written B comes out as a confident 8.
Trained with an eleventh class made of these images (``TrainConfig.not_a_digit``), it can answer "none of them",
and ``predict.Recognizer`` turns that answer into ``digit: None``.

The images are capital letters written by an unsteady pen (``render.pen_letter``), cropped to their ink and
brought to MNIST's form by ``preprocess.to_mnist``, the same step every user image goes through. Letters that are
written like digits are left out (I and O have no strokes at all; S and Z are a 5 and a 2 in many hands): teaching
the network to refuse them would teach it to refuse real 5s and 2s.

    images = letters_in_mnist_form(12_000, seed=0)     # uint8 (12000, 28, 28), bright ink on dark
"""

from __future__ import annotations

import numpy as np

from digitlab.datasets.render import LETTER_STROKES, pen_letter
from digitlab.recognition.preprocess import to_mnist

EXCLUDED = "SZ"  # written like 5 and 2
TRAINING_LETTERS = "".join(sorted(set(LETTER_STROKES) - set(EXCLUDED)))
PEN_HEIGHT = 48  # pixels: enough for the pen's wobble and width to survive the fit into 20x20


def letter_in_mnist_form(letter: str, rng: np.random.Generator) -> np.ndarray:
    """One pen-written ``letter`` -> (28, 28) float32 in [0, 1], fitted and centred as MNIST's digits are."""
    ink = pen_letter(letter, rng, height=PEN_HEIGHT)
    rows, cols = np.nonzero(ink > 0)
    return to_mnist(ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1])


def letters_in_mnist_form(count: int, seed: int = 0, letters: str = TRAINING_LETTERS) -> np.ndarray:
    """``count`` letters, drawn evenly from ``letters``, as uint8 (count, 28, 28) like MNIST's own files."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, 28, 28), np.uint8)
    for index in range(count):
        image = letter_in_mnist_form(letters[index % len(letters)], rng)
        images[index] = np.round(image * 255).astype(np.uint8)
    return images
