"""predict: batched recognition with answers that say how sure they are, and per-item errors."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from digitlab.recognition.engine import load_engine
from digitlab.recognition.predict import Prediction, Recognizer
from digitlab.training.render import render_number, render_set


@pytest.fixture(scope="module")
def engine(small_model_path):
    return load_engine(small_model_path)


@pytest.fixture(scope="module")
def rendered(test_split):
    images, labels = test_split
    return [data for data, _ in render_set(images[:12].numpy(), seed=11)], labels[:12].numpy()


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (200, 200), 250).save(buffer, format="PNG")
    return buffer.getvalue()


def test_batch_goes_on_past_a_bad_item(engine, rendered, tmp_path):
    files, labels = rendered
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    results = Recognizer(engine, threshold=0.0).predict([files[0], str(bad), files[1], ("named", files[2])])
    assert [r.error is None for r in results] == [True, False, True, True]
    assert results[1].source == str(bad) and results[1].digit is None and "\n" not in results[1].error
    assert results[3].source == "named" and results[0].source == "<bytes #0>"
    assert results[0].digit is not None and results[2].digit is not None  # threshold 0: always an answer


def test_results_are_json_serialisable_with_the_promised_keys(engine, rendered):
    files, labels = rendered
    recognizer = Recognizer(engine, threshold=0.0)
    single = recognizer.predict_one(files[0]).to_dict()
    assert {"path", "digit", "confidence", "top3", "probabilities", "box"} <= set(single)
    assert len(single["top3"]) == 3 and abs(sum(single["probabilities"]) - 1) < 1e-3
    assert single["top3"][0]["digit"] == single["digit"]
    json.dumps(single)
    error = recognizer.predict_one(b"not an image").to_dict()
    assert error["digit"] is None and "not an image" in error["error"]
    json.dumps(error)


def test_batches_of_any_size_give_the_same_answers(engine, rendered):
    files, _ = rendered
    one = Recognizer(engine, batch_size=1).predict(files)
    many = Recognizer(engine, batch_size=256).predict(files)
    # Answers and boxes are identical; probabilities may differ in the last rounded digit, because a convolution
    # sums in a different order for another batch size.
    for a, b in zip((r.to_dict() for r in one), (r.to_dict() for r in many), strict=True):
        assert (a["digit"], a["box"], a["reason"]) == (b["digit"], b["box"], b["reason"])
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_mostly_right_on_rendered_digits(engine, rendered):
    files, labels = rendered
    results = Recognizer(engine, threshold=0.0).predict(files)
    assert np.mean([r.digit == label for r, label in zip(results, labels)]) >= 0.8


def test_threshold_decides_when_to_answer(engine, rendered):
    files, _ = rendered
    never = Recognizer(engine, threshold=1.0).predict_one(files[0])
    assert never.digit is None and never.reason.startswith("unsure") and never.confidence is not None
    assert never.digits[0].top3[0][1] == never.confidence
    always = Recognizer(engine, threshold=0.0).predict_one(files[0])
    assert always.digit is not None and always.reason is None
    with pytest.raises(ValueError, match="threshold"):
        Recognizer(engine, threshold=1.5)
    with pytest.raises(ValueError, match="polarity"):
        Recognizer(engine, polarity="upside-down")


def test_blank_and_noise_get_no_digit_and_a_reason(engine):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (200, 200), dtype=np.uint8)
    for source in (blank_png(), noise):
        result = Recognizer(engine, threshold=0.0).predict_one(source)
        assert result.digit is None and result.reason and result.error is None
        assert result.to_dict()["confidence"] is None


def test_a_number(engine, test_split):
    images, labels = test_split
    images, labels = images.numpy(), labels.numpy()
    picks = [int(np.nonzero(labels == d)[0][0]) for d in (2, 0, 2, 6)]
    from digitlab.training.render import Style

    style = Style(width=900, height=300, fill=0.5, centre=(0.5, 0.5), ink=(20, 20, 20), paper=(250, 250, 248),
                  marker=0.0, lighting=0.2, light_angle=1.0, noise=3.0, jpeg_quality=None)
    picture = render_number([images[i] for i in picks], style, gap=5)
    recognizer = Recognizer(engine, threshold=0.0)
    expected = "".join(str(d) for d in recognizer.probabilities(images[picks] / 255.0).argmax(1))
    result = recognizer.predict_one(picture, multi=True)
    assert result.number == expected and len(result.digits) == 4
    as_dict = result.to_dict()
    assert as_dict["number"] == expected and [len(d["box"]) for d in as_dict["digits"]] == [4] * 4
    json.dumps(as_dict)
    unsure = Recognizer(engine, threshold=1.0).predict_one(picture, multi=True)
    assert unsure.number is None and unsure.reason.startswith("4 of 4 digits unsure")


def test_prediction_of_an_error_has_no_digits():
    failed = Prediction("x.png", error="empty file (0 bytes)")
    assert failed.digit is None and failed.number is None and failed.confidence is None


def test_a_model_without_normalisation_metadata_is_refused(engine):
    class Unlabelled:
        metadata = {k: v for k, v in engine.metadata.items() if k != "normalisation"}
        logits = engine.logits

    with pytest.raises(ValueError, match="normalised"):
        Recognizer(Unlabelled())
