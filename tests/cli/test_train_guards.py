"""`digitlab train` and `export` refuse what would lose a user's work or do something other than asked.

Each bad value ends in one line and exit code 2, never a traceback; a trained model is never replaced unasked.
"""

import json

import pytest

from digitlab.cli import main
from digitlab.training import checkpoint


def one_line_exit_2(capsys, args: list[str], needle: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    said = [line for line in err.strip().splitlines() if not line.startswith("training ")]  # the run's header
    assert len(said) == 1 and "Traceback" not in err


SMALL = ["--model", "conv3_dense64", "--limit", "600", "--batch-size", "64", "--quiet"]


def test_a_dry_run_without_out_writes_nothing(tmp_path, monkeypatch, capsys, mnist_dir):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dry-run", *SMALL]) == 0
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, nothing replaced
    assert "nothing kept" in capsys.readouterr().out


def test_training_into_a_finished_run_needs_overwrite_or_resume(tmp_path, capsys, mnist_dir):
    out = tmp_path / "run"
    assert main(["train", "--dry-run", "--out", str(out), *SMALL]) == 0
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    for extra in ([], ["--dry-run"]):
        one_line_exit_2(capsys, ["train", *extra, "--out", str(out), *SMALL], "--overwrite")
    assert (out / "model.safetensors").read_bytes() == before
    assert main(["train", "--dry-run", "--overwrite", "--seed", "3", "--out", str(out), *SMALL]) == 0
    assert (out / "model.safetensors").read_bytes() != before


def test_a_recipe_learns_from_mnist_alone_when_no_other_writers_are_configured(tmp_path, capsys, mnist_dir):
    """The default recipe also learns from real handwriting by other writers; on a machine without it, training goes
    on with MNIST's writers alone, says so, and the checkpoint records what it learned from."""
    out = tmp_path / "run"
    assert main(["train", "--recipe", "default", "--dry-run", "--out", str(out), "--limit", "300", "--quiet"]) == 0
    assert "training on MNIST's writers alone" in capsys.readouterr().err
    _, meta = checkpoint.load(out / "model.safetensors")
    assert meta["config"]["other_writers"] == 0 and meta["config"]["real_letters"] is False
    # asked for by name, the handwriting must be there
    one_line_exit_2(capsys, ["train", "--recipe", "default", "--dry-run", "--out", str(tmp_path / "o"),
                             "--other-writers", "0.1"], "DIGITLAB_REALDATA")


def test_resume_without_a_run_is_an_error(tmp_path, capsys, mnist_dir):
    one_line_exit_2(capsys, ["train", "--resume", "--out", str(tmp_path / "empty"), *SMALL], "no run to resume")
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("option,value,needle", [
    ("--device", "tpu", "device must be one of auto, cpu, cuda"),
    ("--limit", "-5", "limit must be 0 or more"),
    ("--epochs", "0", "epochs must be at least 1"),
    ("--epochs", "-2", "epochs must be at least 1"),
    ("--batch-size", "0", "batch_size must be at least 1"),
    ("--learning-rate", "0", "learning_rate must be a positive number"),
    ("--learning-rate", "-0.1", "learning_rate must be a positive number"),
    ("--learning-rate", "nan", "learning_rate must be a positive number"),
    ("--threads", "-1", "threads must be 0 or more"),
    ("--validation-split", "1", "validation_split must be in [0, 1)"),
    ("--validation-split", "-0.1", "validation_split must be in [0, 1)"),
    ("--weight-decay", "-1", "weight_decay must be 0 or a positive number"),
    ("--momentum", "1.5", "momentum must be in [0, 1)"),
    ("--early-stopping", "-1", "early_stopping must be 0 or more"),
])
def test_wrong_values_are_refused_in_one_line(tmp_path, capsys, option, value, needle):
    one_line_exit_2(capsys, ["train", "--dry-run", "--out", str(tmp_path / "o"), option, value], needle)
    assert not (tmp_path / "o").exists()


HUGE = "99999999999999999999999"  # beyond a C long long: PyTorch would say "Overflow when unpacking long long"


@pytest.mark.parametrize("args, needle", [
    (["train", "--dry-run", "--seed", HUGE], "argument --seed: must be at most 4,294,967,295"),
    (["train", "--dry-run", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["train", "--dry-run", "--threads", HUGE], "argument --threads: must be at most 2,147,483,647"),
    (["train", "--dry-run", "--epochs", HUGE], "argument --epochs: must be at most"),
    (["finetune", "--data", "{tmp}", "--seed", HUGE], "argument --seed: must be at most 4,294,967,295"),
    (["export", "--onnx", "{tmp}/x.onnx", "--check-images", HUGE], "argument --check-images: must be at most"),
    (["predict", "--jobs", HUGE, "x.png"], "argument --jobs/-j: must be at most"),
])
def test_a_number_too_large_for_pytorch_is_refused_naming_its_option(tmp_path, capsys, args, needle):
    one_line_exit_2(capsys, [arg.format(tmp=tmp_path) for arg in args] + ["--out", str(tmp_path / "o")] * (
        args[0] in ("train", "finetune")), needle)
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("command", ["train", "finetune"])
@pytest.mark.parametrize("out", ["/dev/null", "{tmp}/file", "{tmp}/file/run"])
def test_out_that_is_no_folder_is_named_as_such(tmp_path, capsys, command, out):
    (tmp_path / "file").write_text("a user's file")
    out = out.format(tmp=tmp_path)
    args = ["train", "--dry-run", *SMALL] if command == "train" else ["finetune", "--data", str(tmp_path)]
    one_line_exit_2(capsys, [*args, "--out", out], "--out must be a folder")
    assert (tmp_path / "file").read_text() == "a user's file"


def test_a_one_cycle_run_too_short_for_its_warm_up_is_refused(tmp_path, capsys, mnist_dir):
    one_line_exit_2(capsys, ["train", "--recipe", "fast", "--limit", "500", "--out", str(tmp_path / "o"), "--quiet"],
                    "needs at least 5 optimiser steps")
    assert main(["train", "--recipe", "fast", "--limit", "700", "--dry-run", "--out", str(tmp_path / "p"),
                 "--quiet"]) == 0


def test_train_ends_with_the_accuracy_and_records_it(tmp_path, capsys, mnist_dir):
    out = tmp_path / "test"
    assert main(["train", "--dry-run", "--out", str(out), "--validation-split", "0", *SMALL]) == 0
    printed = capsys.readouterr().out
    _, meta = checkpoint.load(out / "model.safetensors")
    accuracy = meta["metrics"]["test_accuracy"]
    assert f"test accuracy {accuracy:.2%} (on 512 MNIST test images" in printed
    assert meta["metrics"]["test_images"] == 512

    out = tmp_path / "val"
    assert main(["train", "--dry-run", "--out", str(out), "--validation-split", "0.1", *SMALL]) == 0
    printed = capsys.readouterr().out
    _, meta = checkpoint.load(out / "model.safetensors")
    assert f"validation accuracy {meta['metrics']['val_accuracy']:.2%}" in printed
    assert "test_accuracy" not in meta["metrics"]
    assert json.loads((out / "history.json").read_text())[-1]["val_accuracy"] == meta["metrics"]["val_accuracy"]


def test_export_into_a_missing_folder_is_refused(tmp_path, capsys):
    one_line_exit_2(capsys, ["export", "--onnx", str(tmp_path / "missing" / "x.onnx")], "does not exist")
    assert list(tmp_path.iterdir()) == []
