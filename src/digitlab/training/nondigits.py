"""Images that are no digit, in MNIST's form: what a network learns to answer "not a digit" from.

A network with ten outputs must name a digit for anything it is shown; a written B comes out as a confident 8.
Trained with an eleventh class made of these images (``TrainConfig.not_a_digit``), it can answer "none of them",
and ``predict.Recognizer`` turns that answer into ``digit: None``.

Half of them are capital letters written by an unsteady pen (``render.pen_letter``); the other half are letters,
capital and small, and signs (+ = ? # ...) typed in the fonts matplotlib ships (DejaVu and STIX, upright, oblique
and bold), rotated, sheared and emboldened at random. Each is cropped to its ink and brought to MNIST's form by
``preprocess.to_mnist``, the same step every user image goes through. Letters that are written or typed like digits
are left out (I, l and O have the shape of 1 and 0; S and Z are a 5 and a 2 in many hands; b is a 6, g and q are
9s in many fonts): teaching the network to refuse them would teach it to refuse real digits. The font that
``benchmarks/unsure.py`` types its letters in (Pillow's own) is not among them, so that benchmark stays a test of
letters the network never saw.

    images = nondigits_in_mnist_form(12_000, seed=0)   # uint8 (12000, 28, 28), bright ink on dark
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from digitlab.recognition.preprocess import to_mnist
from digitlab.training.render import LETTER_STROKES, pen_letter, typed_letter

EXCLUDED = "SZ"  # written like 5 and 2
TRAINING_LETTERS = "".join(sorted(set(LETTER_STROKES) - set(EXCLUDED)))
PEN_HEIGHT = 48  # pixels: enough for the pen's wobble and width to survive the fit into 20x20

CAPITALS = "ABCDEFGHJKLMNPQRTUVWXY"         # no I, O, S, Z
SMALL = "acdefhjkmnprtuvwxy"                # no i, l, o, s, z (1, 0, 5, 2) nor b, g, q (6, 9, 9)
SIGNS = "+=?#%&@*<>~"
TYPED_SIGNS = CAPITALS + SMALL + SIGNS
TYPED_HEIGHT = 56  # pixels of the font's size: room for a rotation and a bold stroke before the fit into 20x20


def training_fonts() -> list[str]:
    """The TrueType files of the DejaVu and STIX families inside matplotlib (a base dependency): no system fonts."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts = sorted(str(path) for pattern in ("DejaVuSans*.ttf", "DejaVuSerif*.ttf", "STIXGeneral*.ttf")
                   for path in folder.glob(pattern) if "Display" not in path.name)
    if not fonts:
        raise FileNotFoundError(f"no DejaVu or STIX fonts in {folder}: is matplotlib installed whole?")
    return fonts


def letter_in_mnist_form(letter: str, rng: np.random.Generator) -> np.ndarray:
    """One pen-written ``letter`` -> (28, 28) float32 in [0, 1], fitted and centred as MNIST's digits are."""
    ink = pen_letter(letter, rng, height=PEN_HEIGHT)
    rows, cols = np.nonzero(ink > 0)
    return to_mnist(ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1])


def typed_in_mnist_form(sign: str, font: str, rng: np.random.Generator) -> np.ndarray:
    """One ``sign`` typed in ``font``, a little bold, rotated and sheared at random -> (28, 28) float32 in [0, 1]."""
    ink = typed_letter(sign, TYPED_HEIGHT, font_path=font, stroke=int(rng.integers(0, 4)))
    height, width = ink.shape
    pad = max(height, width) // 2
    ink = cv2.copyMakeBorder(ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0.0)
    centre = (ink.shape[1] / 2, ink.shape[0] / 2)
    turn = cv2.getRotationMatrix2D(centre, float(rng.uniform(-12, 12)), float(rng.uniform(0.9, 1.1)))
    shear = float(rng.uniform(-0.25, 0.25))  # an italic hand or font, sheared about the centre
    turn[0, 1] += shear
    turn[0, 2] -= shear * centre[1]
    ink = cv2.warpAffine(ink, turn, (ink.shape[1], ink.shape[0]), flags=cv2.INTER_LINEAR)
    rows, cols = np.nonzero(ink > 0.1)
    return to_mnist(ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1])


def nondigits_in_mnist_form(count: int, seed: int = 0) -> np.ndarray:
    """``count`` non-digits as uint8 (count, 28, 28) like MNIST's own files: every other one pen-written (a capital
    letter), the rest typed (a letter or a sign, in one of ``training_fonts``), each sign and font in turn."""
    rng = np.random.default_rng(seed)
    fonts = training_fonts()
    images = np.empty((count, 28, 28), np.uint8)
    for index in range(count):
        if index % 2 == 0:
            image = letter_in_mnist_form(TRAINING_LETTERS[index // 2 % len(TRAINING_LETTERS)], rng)
        else:
            turn = index // 2
            image = typed_in_mnist_form(TYPED_SIGNS[turn % len(TYPED_SIGNS)], fonts[turn % len(fonts)], rng)
        images[index] = np.round(image * 255).astype(np.uint8)
    return images
