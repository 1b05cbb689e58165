"""`eval --data` and `train --data` on small labelled folders with broken files, a blank page and bad names."""

from __future__ import annotations

import json

from digitlab.cli import main
from digitlab.datasets.folders import load_folder
from digitlab.training import checkpoint


def test_eval_data_reports_accuracy_per_class_confusion_and_mistakes_by_file(small_model_path, labelled_folders,
                                                                            capsys):
    folder = labelled_folders[0]["class folders"]
    assert main(["eval", str(small_model_path), "--data", str(folder), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["count"] == 30 and sum(map(sum, report["confusion"])) == 30
    assert len(report["mistakes"]) == round(30 * (1 - report["accuracy"]))
    assert all((folder / m["path"]).is_file() and m["label"] != m["read"] for m in report["mistakes"])
    assert {s["path"] for s in report["skipped"]} == {"3/broken.png", "4/blank.png", "stray.png", "misc/other.png"}
    assert report["data"]["sha256"] == load_folder(folder).sha256
    assert "skipped 4 of 34 files" in captured.err

    assert main(["eval", str(small_model_path), "--data", str(labelled_folders[0]["file names"])]) == 0
    table = capsys.readouterr().out
    assert table.startswith("images: 30") and "confusion" in table and "mistakes:" in table


def test_eval_data_bad_input_is_one_line_exit_2(small_model_path, tmp_path, capsys):
    assert main(["eval", str(small_model_path), "--data", str(tmp_path / "nope")]) == 2
    assert main(["eval", str(small_model_path), "--data", str(tmp_path), "--record"]) == 2
    (tmp_path / "5").mkdir()
    assert main(["eval", str(small_model_path), "--data", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "no such folder" in lines[0] and "--record" in lines[1] and "no labelled" in lines[2]


def test_train_on_a_folder_alone_and_with_mnist(tmp_path, labelled_folders, mnist_dir, capsys):
    folder = labelled_folders[0]["csv"]
    out = tmp_path / "mine"
    assert main(["train", "--model", "conv3_dense64", "--data", str(folder), "--epochs", "2", "--quiet",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "30 labelled images (csv)" in err and "skipped" in err
    _, meta = checkpoint.load(out / "model.safetensors")
    assert meta["config"]["data"] == [str(folder.resolve())]
    assert meta["data_folders"][0]["sha256"] == load_folder(folder).sha256
    assert "val_accuracy" in meta["metrics"]  # the recipe holds out a fifth: of the folder's images

    both = tmp_path / "both"
    assert main(["train", "--model", "conv3_dense64", "--data", str(folder), "--data", "mnist", "--dry-run",
                 "--quiet", "--out", str(both), "--data-dir", str(mnist_dir)]) == 0
    _, meta = checkpoint.load(both / "model.safetensors")
    assert meta["config"]["data"] == [str(folder.resolve()), "mnist"]

    (tmp_path / "nothing" / "2").mkdir(parents=True)
    assert main(["train", "--model", "conv3_dense64", "--data", str(tmp_path / "nothing"), "--quiet", "--out",
                 str(tmp_path / "x")]) == 2
    assert "no usable labelled images" in capsys.readouterr().err
