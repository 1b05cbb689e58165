"""nondigits: pen-written and typed letters and signs in MNIST's form, what a network learns "not a digit" from."""

import numpy as np
from PIL import ImageFont

from digitlab.training.nondigits import (EXCLUDED, TRAINING_LETTERS, TYPED_SIGNS, letter_in_mnist_form,
                                         nondigits_in_mnist_form, training_fonts, typed_in_mnist_form)


def test_nondigits_come_in_mnist_form():
    images = nondigits_in_mnist_form(44, seed=3)
    assert images.shape == (44, 28, 28) and images.dtype == np.uint8
    for image in images:
        rows, cols = np.nonzero(image)
        assert image.max() > 200 and image[0].max() == 0 and image[:, 0].max() == 0  # bright ink, dark border
        assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 20  # fitted into MNIST's 20x20 box
        mass = image.astype(np.float64)
        cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
        cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1  # centred by centre of mass, as MNIST


def test_signs_written_or_typed_like_digits_are_not_taught():
    assert not set(EXCLUDED) & set(TRAINING_LETTERS)
    assert {"B", "E", "F", "K", "R"} <= set(TRAINING_LETTERS)
    assert not set("IOSZilosz" "bgq" "0123456789") & set(TYPED_SIGNS)  # 1 0 5 2, 6 9 9, and digits themselves
    assert {"A", "a", "+", "?"} <= set(TYPED_SIGNS)


def test_typed_fonts_are_matplotlibs_not_the_benchmarks():
    """benchmarks/unsure.py types its letters in Pillow's own font: it must stay one the network never saw."""
    fonts = training_fonts()
    families = {ImageFont.truetype(path, 20).getname()[0] for path in fonts}
    assert {"DejaVu Sans", "DejaVu Serif", "STIXGeneral"} <= families
    assert ImageFont.load_default(size=20).getname()[0] not in families


def test_typed_signs_vary_with_the_draw():
    font = training_fonts()[0]
    first, second = (typed_in_mnist_form("K", font, np.random.default_rng(s)) for s in (0, 1))
    assert first.shape == (28, 28) and first.max() > 0.8
    assert not np.array_equal(first, second)


def test_seeded_and_varied():
    assert np.array_equal(nondigits_in_mnist_form(8, seed=1), nondigits_in_mnist_form(8, seed=1))
    assert not np.array_equal(nondigits_in_mnist_form(8, seed=1), nondigits_in_mnist_form(8, seed=2))
    first, second = (letter_in_mnist_form("B", np.random.default_rng(s)) for s in (0, 1))
    assert not np.array_equal(first, second)
