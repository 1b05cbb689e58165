"""render: the seeded redrawing of MNIST digits that the preprocessing is measured on."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from digitlab.datasets.render import random_style, render_set


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


# --- handwriting_render: the cases people hand in, from digits of any size -----------------------------------------

def _gray(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.int32)


def _sources(test_split):
    from sklearn.datasets import load_digits

    return [test_split[0][0].numpy(), load_digits().images[3]]   # a 28x28 0-255 MNIST digit, an 8x8 0-16 one


def test_every_case_draws_a_readable_file_from_either_source_and_is_seeded(test_split):
    from digitlab.datasets.handwriting_render import CASES, draw, draw_case

    for digit in _sources(test_split):
        for case in CASES:
            drawing = draw_case(digit, case, np.random.default_rng(1))
            image = Image.open(io.BytesIO(drawing.data))
            assert image.size == drawing.size and drawing.case == case
            gray = _gray(drawing.data)
            assert gray.max() - gray.min() > 100, case   # ink and paper differ
            assert draw(digit, case, np.random.default_rng(1)) == drawing.data, case
            assert draw(digit, case, np.random.default_rng(2)) != drawing.data, case


def test_a_glyph_smaller_than_eight_pixels_is_drawn_in_every_case():
    """A small letter of a 28x28 source (an i, a dot) can be fewer than 8 pixels tall: blocky drew its block count
    from 8 up to the glyph's size, and raised for one that small."""
    from digitlab.datasets.handwriting_render import CASES, draw

    glyph = np.zeros((28, 28), np.uint8)
    glyph[10:16, 12:14] = 255   # 6x2 pixels of ink
    for case in CASES:
        assert draw(glyph, case, np.random.default_rng(0))[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")


def test_an_unknown_case_or_an_empty_digit_is_refused():
    from digitlab.datasets.handwriting_render import draw

    with pytest.raises(ValueError, match="unknown case"):
        draw(np.ones((8, 8)), "sideways", np.random.default_rng(0))
    with pytest.raises(ValueError, match="some ink"):
        draw(np.zeros((8, 8)), "photo", np.random.default_rng(0))


def test_tight_crops_have_dark_ink_on_exactly_the_edges_they_claim(test_split):
    from digitlab.datasets.handwriting_render import EDGES, draw_case

    rng = np.random.default_rng(3)
    touched = set()
    for digit in test_split[0][:40].numpy():
        drawing = draw_case(digit, "tight-crop", rng)
        gray = _gray(drawing.data)
        sides = {"left": gray[:, 0], "top": gray[0], "right": gray[:, -1], "bottom": gray[-1]}
        assert drawing.polarity == "dark-on-light" and drawing.notes["edges"]
        half_way = (int(gray.min()) + int(gray.max())) / 2    # between the ink's level and the paper's
        for edge in EDGES:
            assert (sides[edge].min() < half_way) == (edge in drawing.notes["edges"]), (edge, drawing.notes)
        touched.add(len(drawing.notes["edges"]))
    assert touched == {1, 2, 4}


def _light_fall(gray: np.ndarray, half_way: float) -> float:
    """How much darker, as a fraction, the paper's dim corner is than its bright one: a plane fitted to the paper a
    few pixels away from any ink (where the strokes' soft edges do not reach)."""
    away = cv2.erode(gray.astype(np.uint8), np.ones((7, 7), np.uint8)) > half_way
    rows, columns = np.nonzero(away)
    height, width = gray.shape
    design = np.column_stack([np.ones(len(rows)), columns / width, rows / height])
    values = gray[rows, columns].astype(np.float64)
    plane, *_ = np.linalg.lstsq(design, values, rcond=None)
    paper = design @ plane - values < 10   # fitted again without the ink's faint halo, darker than the paper
    plane, *_ = np.linalg.lstsq(design[paper], values[paper], rcond=None)
    corners = [plane @ (1, x, y) for x in (0, 1) for y in (0, 1)]
    return 1 - min(corners) / max(corners)


def test_edge_on_uneven_page_runs_into_the_edges_it_claims_on_paper_lit_unevenly(test_split):
    from digitlab.datasets.handwriting_render import EDGES, draw_case

    rng = np.random.default_rng(6)
    touched, even = set(), []
    for digit in test_split[0][:30].numpy():
        drawing = draw_case(digit, "edge-on-uneven-page", rng)
        gray = _gray(drawing.data)
        sides = {"left": gray[:, 0], "top": gray[0], "right": gray[:, -1], "bottom": gray[-1]}
        assert drawing.polarity == "dark-on-light"
        half_way = (int(gray.min()) + int(gray.max())) / 2
        for edge in EDGES:
            assert (sides[edge].min() < half_way) == (edge in drawing.notes["edges"]), (edge, drawing.notes)
        assert 0.15 <= drawing.notes["lighting"] <= 0.25
        assert _light_fall(gray, half_way) > 0.12, drawing.notes   # the paper itself is lit unevenly
        crop = _gray(draw_case(digit, "tight-crop", rng).data)   # evenly lit, measured the same way
        even.append(_light_fall(crop, (int(crop.min()) + int(crop.max())) / 2))
        touched.add(len(drawing.notes["edges"]))
    assert touched == {1, 2}
    assert np.nanmedian(even) < 0.02   # (nan: a crop with ink on every edge has no paper away from it)


def test_small_scans_are_small_and_binary_scans_have_two_levels(test_split):
    from digitlab.datasets.handwriting_render import draw_case

    rng = np.random.default_rng(4)
    enlarged = set()
    for digit in test_split[0][:30].numpy():
        scan = draw_case(digit, "small-scan", rng)
        side = scan.notes["scan_side"]
        assert 16 <= side <= 80
        if scan.notes["enlarged"] is None:
            assert scan.size == (side, side)
        else:
            times = int(scan.notes["enlarged"].split("x")[1])
            assert scan.size == (side * times, side * times)
            enlarged.add(scan.notes["enlarged"].split()[0])
        pixels = _gray(draw_case(digit, "binary", rng).data)
        assert set(np.unique(pixels)) == {0, 255}
    assert enlarged == {"nearest", "bilinear"}


def test_cases_cover_both_polarities_and_strokes_differ_in_width(test_split):
    from digitlab.datasets.handwriting_render import draw_case, skeleton

    rng = np.random.default_rng(5)
    digits = test_split[0][:20].numpy()
    for case in ("photo", "small-scan", "binary", "thick", "thin", "blocky"):
        assert {draw_case(d, case, rng).polarity for d in digits} == {"dark-on-light", "light-on-dark"}, case
    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[12:28, 12:28] = False                      # a square ring 7 pixels wide
    line = skeleton(ring)
    assert line.any() and not (line & ~ring).any()
    assert (line[12:28, 5:12].sum(axis=1) == 1).all()  # the left side: one pixel wide, unbroken
