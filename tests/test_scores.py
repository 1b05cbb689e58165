"""scores: a model's figures on labelled digits from its outputs, the same whichever runtime made them."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from digitlab.recognition.engine import load_engine
from digitlab.scores import TTA_SHIFTS, engine_logits, format_report, report


def test_report_counts_confusion_precision_recall():
    labels = torch.tensor([0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 1, 1, 1, 0])
    logits = torch.nn.functional.one_hot(predicted, 10).float() * 5
    result = report(logits, labels)
    assert result["accuracy"] == 3 / 5
    assert result["confusion"][0][:3] == [1, 1, 0] and result["confusion"][2][:3] == [1, 0, 0]
    assert result["precision"][1] == pytest.approx(2 / 3, abs=1e-6) and result["recall"][0] == 0.5
    assert result["misclassified"] == [1, 4]
    assert "accuracy: 60.00%" in format_report(result)


def test_not_a_digit_answers_count_as_errors_and_are_reported_apart():
    labels = torch.tensor([3, 3, 8, 8])
    predicted = torch.tensor([3, 10, 8, 10])  # two real digits called "not a digit" by an 11-output network
    result = report(torch.nn.functional.one_hot(predicted, 11).float() * 5, labels)
    assert result["accuracy"] == 0.5 and result["refused"] == 2 and result["misclassified"] == [1, 3]
    assert len(result["confusion"][0]) == 11 and result["confusion"][8][10] == 1
    assert result["precision"][3] == 1.0
    assert "'not a digit': 2" in format_report(result) and "none" in format_report(result)


def test_the_loss_is_the_cross_entropy_and_an_array_or_a_tensor_scores_alike():
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (50,), generator=torch.Generator().manual_seed(1))
    from_tensors, from_arrays = report(logits, labels), report(logits.numpy(), labels.numpy())
    assert from_tensors == from_arrays
    assert from_arrays["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


def test_an_export_scores_as_the_checkpoint_it_was_made_from(test_split):
    # the oracle: PyTorch running the bundled checkpoint; onnxruntime runs its export through the same scores
    from digitlab.training import checkpoint
    from digitlab.training.evaluate import infer

    images, labels = test_split[0][:300], test_split[1][:300]
    model, _ = checkpoint.load(None)
    engine = load_engine(None, "onnx")
    for shifts in (((0, 0),), TTA_SHIFTS):
        expected, got = infer(model, images, shifts=shifts).numpy(), engine_logits(engine, images.numpy(), shifts)
        np.testing.assert_allclose(got, expected, atol=1e-3)
        # a near tie may fall either way between two runtimes' kernels; nothing more than that
        differ = set(report(got, labels.numpy())["misclassified"]) ^ set(report(expected, labels)["misclassified"])
        assert len(differ) <= 1
    assert engine_logits(engine, np.zeros((0, 28, 28), np.uint8)).shape == (0, len(engine.metadata["classes"]))


def test_eval_of_an_export_reports_what_its_checkpoint_does_and_records_nothing(mnist_dir, tmp_path):
    from digitlab.recognition.backends import BUNDLED_ONNX

    def run(*args):
        return subprocess.run([sys.executable, "-m", "digitlab", "eval", *args, "--data-dir", str(mnist_dir)],
                              capture_output=True, text=True, timeout=300)

    export, checkpoint, default = run(str(BUNDLED_ONNX), "--json"), run("--json", "--backend", "torch"), run("--json")
    assert export.returncode == checkpoint.returncode == default.returncode == 0, export.stderr + checkpoint.stderr
    read, expected = json.loads(export.stdout), json.loads(checkpoint.stdout)
    assert read["count"] == 10_000 and read["checkpoint"] == str(BUNDLED_ONNX)
    assert (read["backend"], expected["backend"]) == ("onnx", "torch")
    # the bundled checkpoint has its own export beside it: as `predict` does, eval runs that unless told otherwise
    chosen = json.loads(default.stdout)
    assert chosen["backend"] == "onnx" and chosen["accuracy"] == read["accuracy"]
    assert abs(read["accuracy"] - expected["accuracy"]) <= 2e-4  # at most two near ties fall the other way
    assert len(set(read["misclassified"]) ^ set(expected["misclassified"])) <= 2
    copy = tmp_path / "model.onnx"
    copy.write_bytes(BUNDLED_ONNX.read_bytes())
    refused = run(str(copy), "--record")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "ONNX export" in refused.stderr
    assert copy.read_bytes() == BUNDLED_ONNX.read_bytes()
