"""predict: batched recognition with answers that say how sure they are, and per-item errors."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from digitlab.datasets.render import render_number, render_set
from digitlab.recognition.engine import load_engine
from digitlab.recognition.predict import Prediction, Recognizer


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


def test_a_fault_in_reading_one_item_is_that_items_error(engine, rendered, monkeypatch):
    """Whatever goes wrong while one image is read, the others of the batch still get their answers."""
    from digitlab.recognition import predict

    real = predict.prepare

    def prepare(source, **options):
        if isinstance(source, str) and source == "trap":
            raise RuntimeError("a fault\nover two lines")
        return real(source, **options)

    monkeypatch.setattr(predict, "prepare", prepare)
    files, _ = rendered
    results = Recognizer(engine, threshold=0.0, threads=1).predict([files[0], "trap", files[1]])
    assert results[0].digit is not None and results[2].digit is not None
    assert results[1].error == "could not read the image (RuntimeError: a fault over two lines)"


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
    from digitlab.datasets.render import Style

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


def test_polarity_and_threshold_per_call(engine, rendered):
    files, _ = rendered
    recognizer = Recognizer(engine, threshold=0.0)
    strict = recognizer.predict_one(files[0], threshold=1.0)
    assert strict.digit is None and strict.reason.startswith("unsure")
    assert strict.to_dict() == Recognizer(engine, threshold=1.0).predict_one(files[0]).to_dict()
    assert recognizer.predict_one(files[0]).digit is not None  # the call's threshold did not stay
    flipped = recognizer.predict([files[0]], polarity="light-on-dark")[0]
    assert flipped.polarity == "light-on-dark"
    assert flipped.to_dict() == Recognizer(engine, 0.0, "light-on-dark").predict_one(files[0]).to_dict()
    assert recognizer.predict_one(files[0]).polarity == "dark-on-light"
    multi = list(recognizer.iter_predict(files[:2], multi=True, threshold=1.0))
    assert [m.number for m in multi] == [None, None] and all(m.multi for m in multi)


def test_bad_options_per_call_are_refused_before_reading(engine):
    recognizer = Recognizer(engine)

    def never_read():
        raise AssertionError("an input was read")
        yield

    for options, words in (({"threshold": 1.5}, "threshold must be between 0 and 1"),
                           ({"threshold": float("nan")}, "threshold"), ({"threshold": "0.5"}, "threshold"),
                           ({"polarity": "upside-down"}, "polarity must be one of")):
        with pytest.raises(ValueError, match=words):
            recognizer.iter_predict(never_read(), **options)
        with pytest.raises(ValueError, match=words):
            recognizer.predict_one(b"", **options)


class Reordered:
    """The test model behind other class names and another output order: ``classes`` as listed, each output taking
    the logit of the real class with that name; a "not a digit" output gets the logit ``refusal``."""

    def __init__(self, engine, classes: list, refusal: float = -50.0):
        names = [str(c) for c in classes]
        self.metadata = {**engine.metadata, "classes": classes}
        self.engine, self.names, self.refusal = engine, names, refusal
        self.real = [str(c) for c in engine.metadata["classes"]]

    def logits(self, batch):
        real = self.engine.logits(batch)
        columns = [real[:, self.real.index(name)] if name in self.real else np.full(len(real), self.refusal)
                   for name in self.names]
        return np.stack(columns, axis=1).astype(np.float32)


def test_outputs_are_found_by_their_class_names(engine, rendered):
    files, _ = rendered
    expected = Recognizer(engine, threshold=0.0).predict(files)
    digits = [str(d) for d in range(10)]
    for classes in (["not a digit", *digits], [*reversed(digits), "not a digit"], list(range(10)),
                    ["not a digit", *reversed(range(10))]):
        results = Recognizer(Reordered(engine, classes), threshold=0.0).predict(files)
        assert [r.digit for r in results] == [e.digit for e in expected], classes
        for result, before in zip(results, expected):
            np.testing.assert_allclose(result.digits[0].probabilities, before.digits[0].probabilities, atol=1e-5)
            assert (result.digits[0].not_a_digit is None) == ("not a digit" not in classes)
    refusing = Recognizer(Reordered(engine, ["not a digit", *digits], refusal=50.0), threshold=0.0)
    answer = refusing.predict_one(files[0])
    assert answer.digit is None and answer.reason.startswith("not a digit")
    assert answer.digits[0].not_a_digit > 0.99


def test_a_model_without_a_class_list_is_refused(engine):
    class Unlisted:
        metadata = {k: v for k, v in engine.metadata.items() if k != "classes"}
        logits = engine.logits

    with pytest.raises(ValueError, match="no class list"):
        Recognizer(Unlisted())
    with pytest.raises(ValueError, match="lacks the digits 7"):
        Recognizer(Reordered(engine, [d for d in range(10) if d != 7]))


class _NanEngine:
    """A model whose weights went bad: every output NaN."""

    metadata = {"classes": [str(d) for d in range(10)], "normalisation": {"mean": 0.1307, "std": 0.3081}}

    def logits(self, batch):
        return np.full((len(batch), 10), np.nan, np.float32)


def test_a_model_that_answers_nan_never_passes_the_threshold(rendered):
    """NaN fails every comparison, so `confidence < threshold` let it through as digit 0 at "nan%"."""
    files, _ = rendered
    for multi in (False, True):
        result = Recognizer(_NanEngine(), threshold=0.9).predict_one(files[0], multi=multi)
        assert result.digits and all(d.digit is None for d in result.digits)
        assert "not a number: the model file is broken" in result.reason


@pytest.mark.parametrize("norm", [{"mean": 0.1, "std": 0.0}, {"mean": 0.1, "std": -2.0},
                                  {"mean": float("nan"), "std": 0.3}, {"mean": 0.1, "std": float("inf")}])
def test_a_broken_normalisation_is_refused(norm):
    engine = _NanEngine()
    engine.metadata = engine.metadata | {"normalisation": norm}
    with pytest.raises(ValueError, match="finite and std positive"):
        Recognizer(engine)


def test_the_onnx_engine_refuses_a_broken_normalisation(tmp_path):
    onnx = pytest.importorskip("onnx")
    from digitlab.recognition.engine import BUNDLED_ONNX, OnnxEngine

    proto = onnx.load(str(BUNDLED_ONNX))
    entry = next(e for e in proto.metadata_props if e.key == "digitlab")
    entry.value = json.dumps(json.loads(entry.value) | {"normalisation": {"mean": 0.1, "std": 0.0}})
    path = tmp_path / "broken.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ValueError, match="finite and std positive"):
        OnnxEngine(path)


def test_json_never_holds_nan_even_when_a_model_answers_it():
    import json

    from digitlab.recognition.predict import DigitResult, Prediction

    nan = float("nan")
    digit = DigitResult(None, nan, [(0, nan), (1, nan), (2, nan)], [nan] * 10, (0, 0, 1, 1), "broken", None, nan)
    line = json.dumps(Prediction("x.png", digits=[digit]).to_dict(), allow_nan=False)  # raises on NaN
    assert json.loads(line)["confidence"] is None and json.loads(line)["probabilities"] == [None] * 10
    assert json.loads(json.dumps(Prediction("x.png", multi=True, digits=[digit]).to_dict(), allow_nan=False))


class _FixedEngine:
    """Eleven outputs with fixed logits: "not a digit" a little above a 3, whatever the image."""

    def __init__(self, calibration: dict):
        self.metadata = {"classes": [str(d) for d in range(10)] + ["not a digit"], "calibration": calibration,
                         "normalisation": {"mean": 0.1307, "std": 0.3081}}

    def logits(self, batch):
        row = np.zeros(11, np.float32)
        row[3], row[10] = 3.0, 3.5
        return np.tile(row, (len(batch), 1))


def test_the_calibrated_offset_and_threshold_are_how_a_model_is_read(rendered):
    """A model's calibration may lower its "not a digit" output and name its own threshold (calibrate's refusal
    bar): the Recognizer reads the model so, and a threshold asked for still wins over the model's."""
    files, _ = rendered
    plain = Recognizer(_FixedEngine({"temperature": 1.0}))
    assert plain.threshold == 0.45 and plain.predict_one(files[0]).reason.startswith("not a digit")
    barred = Recognizer(_FixedEngine({"temperature": 1.0, "not_a_digit_offset": 1.0, "threshold": 0.3}))
    answer = barred.predict_one(files[0])
    assert barred.threshold == 0.3 and answer.digit == 3 and answer.reason is None
    assert barred.predict_one(files[0], threshold=0.9).reason.startswith("unsure")
    with pytest.raises(ValueError, match="offset must be 0 or more"):
        Recognizer(_FixedEngine({"temperature": 1.0, "not_a_digit_offset": -1.0}))
