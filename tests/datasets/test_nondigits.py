"""nondigits: pen-written letters in MNIST's form, the examples a network learns "not a digit" from."""

import numpy as np

from digitlab.datasets.nondigits import EXCLUDED, TRAINING_LETTERS, letter_in_mnist_form, letters_in_mnist_form


def test_letters_come_in_mnist_form():
    images = letters_in_mnist_form(44, seed=3)
    assert images.shape == (44, 28, 28) and images.dtype == np.uint8
    for image in images:
        rows, cols = np.nonzero(image)
        assert image.max() > 200 and image[0].max() == 0 and image[:, 0].max() == 0  # bright ink, dark border
        assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 20  # fitted into MNIST's 20x20 box
        mass = image.astype(np.float64)
        cy = (mass.sum(axis=1) * np.arange(28)).sum() / mass.sum()
        cx = (mass.sum(axis=0) * np.arange(28)).sum() / mass.sum()
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1  # centred by centre of mass, as MNIST


def test_letters_written_like_digits_are_not_taught():
    assert not set(EXCLUDED) & set(TRAINING_LETTERS)
    assert {"B", "E", "F", "K", "R"} <= set(TRAINING_LETTERS)


def test_seeded_and_varied():
    assert np.array_equal(letters_in_mnist_form(8, seed=1), letters_in_mnist_form(8, seed=1))
    assert not np.array_equal(letters_in_mnist_form(8, seed=1), letters_in_mnist_form(8, seed=2))
    first, second = (letter_in_mnist_form("B", np.random.default_rng(s)) for s in (0, 1))
    assert not np.array_equal(first, second)
