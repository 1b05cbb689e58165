"""render.render_letters: pen-written capital letters, the project's own examples of what is not a digit."""

import numpy as np

from digitlab.datasets.render import LETTER_STROKES, pen_letter, render_letters
from digitlab.recognition.preprocess import prepare


def test_every_letter_draws_as_one_glyph_in_mnist_form():
    for letter, data in render_letters("".join(LETTER_STROKES), 1, seed=2):
        prepared = prepare(data)
        assert prepared.reason is None and len(prepared.glyphs) == 1, (letter, prepared.reason)
        image = prepared.glyphs[0].image
        assert image.shape == (28, 28) and image.max() > 0.9


def test_letters_are_seeded_and_vary():
    first = render_letters("BE", 2, seed=5)
    assert first == render_letters("BE", 2, seed=5)
    assert len({data for _, data in first}) == 4
    a, b = pen_letter("B", np.random.default_rng(0)), pen_letter("B", np.random.default_rng(1))
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_typed_letters_come_from_pillows_own_font_and_read_as_one_glyph():
    for letter, data in render_letters("BEKRabg", 1, seed=4, typed=True):
        prepared = prepare(data)
        assert prepared.reason is None and len(prepared.glyphs) == 1, (letter, prepared.reason)
    typed = dict(render_letters("B", 1, seed=4, typed=True))["B"]
    assert typed != dict(render_letters("B", 1, seed=4))["B"]  # not the pen model's drawing
