"""handwriting: the sources of real handwriting, the plain reference pipeline and the per-case evaluation."""

import io

import numpy as np
import pytest
from PIL import Image

from digitlab.datasets.handwriting import PARTS, answer_of, combined, evaluate, load_source, reference_mnist


@pytest.fixture(scope="module")
def recognizer():
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer

    return Recognizer(load_engine(backend="onnx"), threads=1)   # the bundled model: what the benchmark measures


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("source, sizes, shape", [("mnist", (5000, 5000), (28, 28)), ("sklearn", (898, 899), (8, 8))])
def test_sources_load_with_their_counts_and_disjoint_parts(mnist_dir, source, sizes, shape):
    parts = [load_source(source, part, str(mnist_dir)) for part in PARTS]
    for (images, labels), size in zip(parts, sizes):
        assert images.shape == (size, *shape) and images.dtype == np.uint8 and labels.shape == (size,)
        assert images.max() == 255 and set(np.unique(labels)) == set(range(10))
    choose, report = (set(map(bytes, images)) for images, _ in parts)
    assert len(choose & report) <= 0.01 * len(report)   # a few identical 8x8 digits occur in both halves by chance
    with pytest.raises(ValueError, match="unknown source"):
        load_source("emnist", "report")
    with pytest.raises(ValueError, match="unknown part"):
        load_source("mnist", "test", str(mnist_dir))


def test_the_reference_pipeline_reads_clean_mnist_digits_in_either_polarity(test_split, recognizer):
    images, labels = test_split[0][:100].numpy(), test_split[1][:100].numpy()
    for paper, pixels in ((255, 255 - images), (0, images)):  # dark on light as on paper, then MNIST's own
        seen = np.stack([reference_mnist(_png(np.pad(p, 10, constant_values=paper))) for p in pixels])
        assert seen.shape == (100, 28, 28) and seen.max() == 1.0
        right = recognizer.probabilities(seen)[:, recognizer.digit_outputs].argmax(axis=1) == labels
        assert right.mean() >= 0.95


def test_evaluate_returns_consistent_figures(mnist_dir, recognizer):
    cases = ("tight-crop", "blocky")
    rows = evaluate(recognizer, "mnist", cases, part="choose", count=12, seed=3, data_dir=str(mnist_dir))
    assert [r["case"] for r in rows] == list(cases)
    for r in rows:
        answers = r["answers"]
        assert r["images"] == 12 == len(answers["labels"])
        assert 0 <= r["right"] <= r["forced"] <= 100 and r["right"] + r["refused"] <= 100
        assert r["refused"] == pytest.approx(100 * sum(g < 0 for g in answers["given"]) / 12)
        assert sum(r["refusals"].values()) == sum(g < 0 for g in answers["given"])
        assert 0 <= r["reference"] <= 100
    everything = combined(rows)
    assert everything["images"] == 24 and everything["case"] == "all cases"
    assert everything["right"] == pytest.approx((rows[0]["right"] + rows[1]["right"]) / 2)
    again = evaluate(recognizer, "mnist", cases[1:], part="choose", count=12, seed=3, data_dir=str(mnist_dir))
    assert again[0]["answers"] == rows[1]["answers"]   # a case draws the same files whichever cases run with it


def test_answers_read_from_json_lines_as_the_cli_writes_them():
    assert answer_of({"digit": 3, "top3": [{"digit": 3, "probability": 0.9}], "reason": None}) == (3, 3, None)
    unsure = {"digit": None, "top3": [{"digit": 8, "probability": 0.5}], "reason": "unsure: best guess 8 at 50%"}
    assert answer_of(unsure) == (None, 8, "unsure: best guess 8 at 50%")
    assert answer_of({"digit": None, "top3": [], "reason": "blank image: no ink"}) == (None, None,
                                                                                       "blank image: no ink")
    assert answer_of({"path": "x.png", "digit": None, "error": "not an image"}) == (None, None, "not an image")
