"""The bundled model, run for real on all 10,000 MNIST test images, must score what its metadata claims."""

import os

import pytest

from digitlab.training import checkpoint
from digitlab.scores import TTA_SHIFTS
from digitlab.training.evaluate import infer

# A floor against a broken or regressed bundle, not a target: the targets (99.70% for the mean over 3 seeds, 99.6%
# for the bundle) are benchmarks' (docs/results.md). The bundle is seed 0 of the default recipe trained with a 10%
# validation split held out for calibrating its confidence, fixed as the one to ship before it was scored, and
# scored strictly (a digit called "not a digit" is wrong). Since the recipe learns from other writers too it scores
# 99.59%, one test digit under the 99.6% target (seeds differ by about four): the floor sits below the seeds' spread,
# where a real regression would fall, not at the target.
ACCURACY_FLOOR = 0.9955


@pytest.fixture(scope="module")
def bundled():
    if not checkpoint.BUNDLED.is_file():
        pytest.fail(f"no bundled model at {checkpoint.BUNDLED}")
    return checkpoint.load()


def test_bundled_model_is_small_and_says_how_it_was_made(bundled):
    model, meta = bundled
    assert checkpoint.BUNDLED.stat().st_size < 4 * 2**20
    assert meta["arch"] == "digitnet" and meta["classes"][10] == "not a digit"
    assert meta["command"].startswith("digitlab train --recipe default")
    assert meta["config"]["validation_split"] == 0.0 or "val_accuracy" in meta["metrics"]
    assert meta["test"]["count"] == 10_000


def test_bundled_model_is_calibrated_on_its_held_out_split_and_its_export_says_so(bundled):
    from digitlab.recognition.backends import BUNDLED_INT8
    from digitlab.recognition.engine import OnnxEngine, load_engine

    _, meta = bundled
    calibration = meta["calibration"]
    assert meta["config"]["validation_split"] > 0 and "validation split" in calibration["fitted_on"]
    assert 0 < calibration["temperature"] < 1  # label smoothing made it under-confident: the temperature sharpens
    assert calibration["ece_after"] < calibration["ece_before"]
    # Fitted on other writers too, from the part of their digits kept for choosing, never the part reported on
    other = calibration["other_writers"]
    assert other["source"] == "sklearn" and other["part"] == "choose" and 0 < other["weight"] < 1
    assert all(part["ece_after"] < part["ece_before"] for part in calibration["parts"])
    exported = load_engine(None, "onnx").metadata
    assert exported["calibration"] == calibration and exported["test"] == meta["test"]
    if BUNDLED_INT8.is_file():  # the int8 export is read with the same temperature
        assert OnnxEngine(BUNDLED_INT8).metadata["calibration"] == calibration


def test_bundled_model_scores_what_it_claims_on_the_test_set(bundled, test_split):
    model, meta = bundled
    images, labels = test_split
    predicted = infer(model, images).argmax(1)  # over all 11 outputs: a digit called "not a digit" is an error
    accuracy = (predicted == labels).double().mean().item()
    assert accuracy == pytest.approx(meta["test"]["accuracy"], abs=2e-4)  # 2 images: BLAS order may differ
    assert accuracy >= ACCURACY_FLOOR
    assert (predicted == 10).sum().item() <= 10  # refusing real digits is the price of refusing letters: keep it low


def test_bundled_model_says_letters_are_not_digits():
    """Through the whole user path (photo-like files -> preprocess -> Recognizer), letters are refused, those a
    digit reader takes for an 8 (B, E, F, K, R) among them."""
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer
    from digitlab.datasets.render import render_letters

    recognizer = Recognizer(load_engine())
    for typed in (False, True):  # the pen model it learnt from (other draws), and a font it never saw
        letters = render_letters("BEFKRAHMNPTXY", 4, seed=4242, typed=typed)
        answers = recognizer.predict([data for _, data in letters])
        refused = [a.digit is None for a in answers]
        assert sum(refused) >= 0.8 * len(refused), (typed, [l for (l, _), r in zip(letters, refused) if not r])
        assert all(a.reason for a in answers if a.digit is None)
        # mostly the network's own verdict (a thin typed stroke on a noisy page may already fail preprocess)
        assert sum((a.reason or "").startswith("not a digit") for a in answers) >= 0.7 * len(answers)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DIGITLAB_SLOW"), reason="five passes over the test set; DIGITLAB_SLOW=1")
def test_bundled_model_tta_claim_holds(bundled, test_split):
    model, meta = bundled
    if "test_tta" not in meta:
        pytest.skip("no TTA accuracy recorded for the bundled model")
    images, labels = test_split
    accuracy = (infer(model, images, shifts=TTA_SHIFTS).argmax(1) == labels).double().mean().item()
    assert accuracy == pytest.approx(meta["test_tta"]["accuracy"], abs=2e-4)
