"""Calibration: the fitted temperature, the error measures, the CLI command and the Recognizer that applies it."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from digitlab.recognition.engine import load_engine
from digitlab.recognition.facts import DEFAULT_THRESHOLD, UNCALIBRATED_THRESHOLD
from digitlab.recognition.predict import Recognizer
from digitlab.training import checkpoint
from digitlab.training.calibrate import (calibrate, calibration_error, fit_temperature, reliability,
                                        risk_coverage)
from digitlab.training.config import TrainConfig
from digitlab.training.loop import train


def test_the_temperature_that_made_the_labels_is_found():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, 11, generator=generator) * 4
    labels = torch.multinomial(torch.softmax(logits / 0.5, dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.05)


def test_calibration_error_is_the_gap_between_confidence_and_accuracy():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 50_000)
    honest = rng.random(50_000) < confidence        # right as often as it says
    assert calibration_error(confidence, honest) < 0.01
    boastful = rng.random(50_000) < confidence - 0.2  # right 20 points less often than it says
    assert calibration_error(confidence, boastful) == pytest.approx(0.2, abs=0.01)
    rows = reliability(confidence, honest)
    assert sum(r["count"] for r in rows) == 50_000 and all(r["low"] < r["confidence"] <= r["high"] for r in rows)


def test_risk_falls_as_fewer_answers_are_given():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.6, 0.6])
    right = np.array([True, True, True, False, False, True])
    curve = risk_coverage(confidence, right)
    assert [p["threshold"] for p in curve] == [0.99, 0.95, 0.9, 0.8, 0.6]
    assert [p["coverage"] for p in curve] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 1.0])
    assert [p["risk"] for p in curve] == pytest.approx([0, 0, 0, 1 / 4, 2 / 6])


def test_a_model_trained_on_every_image_is_not_calibrated_on_the_test_set(small_model_path, tmp_path):
    copy = tmp_path / "all.safetensors"
    copy.write_bytes(small_model_path.read_bytes())
    with pytest.raises(ValueError, match="--validation-split"):
        calibrate(copy)
    done = subprocess.run([sys.executable, "-m", "digitlab", "calibrate", str(copy)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "--validation-split" in done.stderr


def test_calibrate_records_a_temperature_that_lowers_the_error(tmp_path, mnist_dir):
    cfg = TrainConfig(model="conv3_dense64", epochs=1, batch_size=64, limit=3000, validation_split=0.3,
                      label_smoothing=0.1, augment=False, not_a_digit=0.0, threads=1, data_dir=str(mnist_dir))
    train(cfg, tmp_path, quiet=True)
    path = tmp_path / "model.safetensors"
    weights_before = checkpoint.read(path)[0]
    done = subprocess.run([sys.executable, "-m", "digitlab", "calibrate", str(path), "--data-dir", str(mnist_dir)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "temperature" in done.stdout
    tensors, meta = checkpoint.read(path)
    entry = meta["calibration"]
    assert entry["count"] == 900 and entry["temperature"] > 0
    assert entry["nll_after"] <= entry["nll_before"]
    assert all(torch.equal(tensors[k], weights_before[k]) for k in tensors)  # only the metadata changed

    calibrated = Recognizer(load_engine(path))
    assert calibrated.temperature == entry["temperature"] and calibrated.threshold == DEFAULT_THRESHOLD
    images = np.random.default_rng(0).random((4, 28, 28)).astype(np.float32)
    plain = Recognizer(load_engine(path))
    plain.temperature = 1.0
    sharp, flat = calibrated.probabilities(images), plain.probabilities(images)
    assert (sharp.argmax(1) == flat.argmax(1)).all()  # the answers stay; only how sure they are changes
    assert (sharp.max(1) > flat.max(1)).all() == (entry["temperature"] < 1)


def test_an_uncalibrated_model_keeps_the_older_threshold(small_model_path):
    recognizer = Recognizer(load_engine(small_model_path))
    assert recognizer.temperature == 1.0 and recognizer.threshold == UNCALIBRATED_THRESHOLD
    assert Recognizer(load_engine(small_model_path), threshold=0.5).threshold == 0.5


def test_a_weighted_fit_gives_each_set_its_share_whatever_its_size():
    # Two sets of digits, one whose labels came from a sharp softmax (T 0.5) and one from a soft one (T 1.0).
    generator = torch.Generator().manual_seed(1)
    sharp_logits, soft_logits = (torch.randn(n, 11, generator=generator) * 4 for n in (4_000, 40_000))
    sharp = torch.multinomial(torch.softmax(sharp_logits / 0.5, dim=1), 1, generator=generator).squeeze(1)
    soft = torch.multinomial(torch.softmax(soft_logits / 1.0, dim=1), 1, generator=generator).squeeze(1)
    logits, labels = torch.cat([sharp_logits, soft_logits]), torch.cat([sharp, soft])
    pooled = fit_temperature(logits, labels)  # ten times as many soft rows: the soft set wins
    halves = torch.cat([torch.full((4_000,), 0.5 / 4_000), torch.full((40_000,), 0.5 / 40_000)])
    halved = fit_temperature(logits, labels, halves)
    only_sharp = fit_temperature(logits, labels, torch.cat([torch.ones(4_000), torch.zeros(40_000)]))
    assert only_sharp == pytest.approx(0.5, rel=0.05)
    assert only_sharp < halved < pooled < 1.05
    assert pooled == pytest.approx(1.0, rel=0.1) and halved < 0.9 * pooled


@pytest.fixture(scope="module")
def held_out_model(tmp_path_factory, mnist_dir):
    """A small model trained with 30 % of its 3,000 images held out: one calibration per test (on a copy)."""
    folder = tmp_path_factory.mktemp("held_out")
    cfg = TrainConfig(model="conv3_dense64", epochs=1, batch_size=64, limit=3000, validation_split=0.3,
                      label_smoothing=0.1, augment=False, not_a_digit=0.0, threads=1, data_dir=str(mnist_dir))
    train(cfg, folder, quiet=True)
    return folder / "model.safetensors"


def test_calibrating_on_other_writers_records_what_it_was_fitted_on(held_out_model, tmp_path, mnist_dir):
    pytest.importorskip("sklearn")
    path = tmp_path / "model.safetensors"
    path.write_bytes(held_out_model.read_bytes())
    done = subprocess.run([sys.executable, "-m", "digitlab", "calibrate", str(path), "--data-dir", str(mnist_dir),
                           "--other-writers", "sklearn", "--other-count", "4", "--other-weight", "0.25"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "sklearn drawn" in done.stdout
    entry = checkpoint.read(path)[1]["calibration"]
    other = entry["other_writers"]
    assert other["source"] == "sklearn" and other["part"] == "choose"  # never the part the benchmarks report
    assert other["digits"] == 4 and other["weight"] == 0.25 and other["drawn"] == 4 * len(other["cases"])
    assert "validation split" in entry["fitted_on"] and "sklearn" in entry["fitted_on"]
    parts = {part["name"]: part for part in entry["parts"]}
    assert parts["validation split"]["count"] == 900 and parts["validation split"]["weight"] == pytest.approx(0.75)
    assert parts["sklearn drawn"]["count"] == other["drawn"] - other["nothing_found"]
    assert parts["sklearn drawn"]["weight"] == pytest.approx(0.25)
    assert entry["nll_after"] <= entry["nll_before"]
    assert Recognizer(load_engine(path)).temperature == entry["temperature"]


@pytest.mark.parametrize("options, message", [
    (["--other-writers", "mnist"], "choose one of: sklearn"),
    (["--other-writers", "sklearn", "--other-weight", "1"], "between 0 and 1"),
    (["--other-writers", "sklearn", "--other-count", "0"], "at least 1"),
    (["--other-count", "10"], "add --other-writers"),
])
def test_a_bad_other_writer_set_is_refused_in_one_line_before_any_work(held_out_model, tmp_path, options, message):
    path = tmp_path / "model.safetensors"
    path.write_bytes(held_out_model.read_bytes())
    done = subprocess.run([sys.executable, "-m", "digitlab", "calibrate", str(path), *options],
                          capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "calibration" not in checkpoint.read(path)[1]  # nothing was written


def test_a_share_of_other_writers_in_the_fit_calibrates_held_out_digits_of_theirs():
    # MNIST's writers: labels drawn from softmax(logits / 0.5); other writers: the network is as sure of them, but
    # they are right less often (softmax(logits / 0.8)). Held-out digits of the other writers judge the two fits.
    generator = torch.Generator().manual_seed(2)

    def writers(count, temperature):
        logits = torch.randn(count, 11, generator=generator) * 4
        return logits, torch.multinomial(torch.softmax(logits / temperature, 1), 1, generator=generator).squeeze(1)

    (mnist, mnist_labels), (other, other_labels), (held, held_labels) = (
        writers(6_000, 0.5), writers(3_000, 0.8), writers(20_000, 0.8))
    alone = fit_temperature(mnist, mnist_labels)
    shares = torch.cat([torch.full((6_000,), 0.5 / 6_000), torch.full((3_000,), 0.5 / 3_000)])
    mixed = fit_temperature(torch.cat([mnist, other]), torch.cat([mnist_labels, other_labels]), shares)

    def error(temperature):
        probabilities = torch.softmax(held / temperature, 1)
        confidence, best = probabilities.max(1)
        return calibration_error(confidence.numpy(), (best == held_labels).numpy())

    assert alone < mixed
    assert error(mixed) < 0.6 * error(alone)  # 4.0 % against 8.5 % with these seeds


def test_refused_share_counts_not_a_digit_and_unsure_as_a_recognizer_does():
    from digitlab.training.calibrate import refused_share

    rows = np.array([[0.9, 0.05, 0.05],     # a sure digit 0
                     [0.3, 0.2, 0.5],       # "not a digit" wins (the last output)
                     [0.35, 0.33, 0.32]])   # unsure at 0.4
    assert refused_share(rows, 2, offset=0.0, threshold=0.4) == pytest.approx(2 / 3)
    assert refused_share(rows, 2, offset=0.0, threshold=0.0) == pytest.approx(1 / 3)   # "not a digit" alone
    # lowered by 1 log-odds, the second row's "not a digit" (0.5 / e = 0.18) no longer outweighs its 0.3, whose
    # share of what is left is 0.3 / 0.68 = 0.44; the third row's best is 0.35 / 0.80 = 0.44: both answered
    assert refused_share(rows, 2, offset=1.0, threshold=0.4) == 0.0
