"""render: the seeded redrawing of MNIST digits that the preprocessing is measured on."""

import io

import numpy as np
from PIL import Image

from digitlab.training.render import random_style, render_set


def test_seeded_and_within_the_promised_ranges(test_split):
    digits = test_split[0][:30].numpy()
    first, again = render_set(digits, seed=5), render_set(digits, seed=5)
    assert [d for d, _ in first] == [d for d, _ in again]
    assert [d for d, _ in render_set(digits[:3], seed=6)] != [d for d, _ in first[:3]]
    for data, style in first:
        image = Image.open(io.BytesIO(data))
        assert image.size == (style.width, style.height) and 100 <= min(image.size) and max(image.size) <= 1000
        assert image.format == ("PNG" if style.jpeg_quality is None else "JPEG")
        assert 0.30 <= style.fill <= 0.85


def test_styles_cover_both_polarities_and_every_condition():
    rng = np.random.default_rng(0)
    styles = [random_style(rng) for _ in range(300)]
    assert {s.polarity for s in styles} == {"dark-on-light", "light-on-dark"}
    assert any(s.marker > 0 for s in styles) and any(s.jpeg_quality for s in styles)
    assert any(s.lighting > 0.3 for s in styles) and any(s.noise > 5 for s in styles)
