"""The pictures: each drawn from real data, opened, of a sensible size and not blank; the training curves written by
a real (tiny) run, with history.csv and TensorBoard event files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab.cli import main
from digitlab.training import checkpoint
from digitlab.training.config import TrainConfig
from digitlab.training.figures import (LESSON_KERNELS, curves_figure, feature_maps_figure, filters_figure,
                                       first_layer, kernels_figure, montage, save_png, stage_maps, write_curves)
from digitlab.training.loop import train
from digitlab.training.data import attach_data_config
from digitlab.training.models import create_model

HISTORY = [{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7, "seconds": 1.0, "lr": 0.01, "val_loss": 0.5,
            "val_accuracy": 0.85},
           {"epoch": 2, "train_loss": 0.4, "train_accuracy": 0.88, "seconds": 1.1, "lr": 0.005, "val_loss": 0.3,
            "val_accuracy": 0.91},
           {"epoch": 3, "train_loss": 0.3, "train_accuracy": 0.92, "seconds": 1.0, "lr": 0.001, "val_loss": 0.25,
            "val_accuracy": 0.93, "test_accuracy": 0.93, "test_images": 10000}]
TRAINING, VALIDATION = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours


def colour_pixels(path, rgb) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < 30).sum())


def test_curves_and_history_csv(tmp_path, check_picture):
    written = write_curves(HISTORY, tmp_path)
    assert [p.name for p in written] == ["curves.png", "history.csv"]
    check_picture(tmp_path / "curves.png", 1000, 300)
    # both the training and the validation lines are drawn
    assert colour_pixels(tmp_path / "curves.png", TRAINING) > 200
    assert colour_pixels(tmp_path / "curves.png", VALIDATION) > 200
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert len(rows) == 3 and float(rows[1]["val_loss"]) == 0.3
    assert rows[0]["test_accuracy"] == "" and rows[2]["test_images"] == "10000"  # every key gets a column


def test_one_epoch_gets_its_table_but_no_curves(tmp_path):
    assert [p.name for p in write_curves(HISTORY[:1], tmp_path)] == ["history.csv"]
    assert not (tmp_path / "curves.png").exists()
    assert len(list(csv.DictReader((tmp_path / "history.csv").open()))) == 1


def test_between_short_epochs_only_the_table_is_written(tmp_path):
    # the loop draws curves after long epochs and at the end of a run; in between it asks for the table alone
    assert [p.name for p in write_curves(HISTORY, tmp_path, draw=False)] == ["history.csv"]
    assert not (tmp_path / "curves.png").exists()


def test_curves_without_validation_have_no_validation_line(tmp_path, check_picture):
    history = [{k: v for k, v in row.items() if not k.startswith("val_")} for row in HISTORY]
    save_png(curves_figure(history), tmp_path / "curves.png")
    check_picture(tmp_path / "curves.png", 1000, 300)
    assert colour_pixels(tmp_path / "curves.png", TRAINING) > 200
    assert colour_pixels(tmp_path / "curves.png", VALIDATION) == 0


def test_a_tiny_fast_run_leaves_curves_beside_the_model(tmp_path, mnist_dir, check_picture):
    out = tmp_path / "run"
    # the real path end to end on a few batches (a whole epoch of the recipe is a benchmark's job, not a test's);
    # two epochs, as one point is not a curve
    assert main(["train", "--recipe", "fast", "--epochs", "2", "--limit", "1024", "--out", str(out), "--quiet"]) == 0
    check_picture(out / "curves.png", 1000, 300)
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in csv.DictReader((out / "history.csv").open())] == ["1", "2"] == [
        str(row["epoch"]) for row in history]


def test_tensorboard_event_files(tmp_path, mnist_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = TrainConfig(model="mlp_3x256", epochs=2, batch_size=128, limit=600, validation_split=0.2, seed=0,
                      augment=False, ema_decay=0.0)
    train(cfg, tmp_path, quiet=True, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr"} <= tags
    assert [e.step for e in events.Scalars("val/accuracy")] == [1, 2]


def test_tensorboard_missing_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main(["train", "--dry-run", "--tensorboard", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pip install 'digitlab[tensorboard]'" in err
    assert not (tmp_path / "o").exists()  # refused before anything was trained or written


def fresh(name: str) -> torch.nn.Module:
    """An untrained network carrying MNIST's data configuration, as a training run builds it."""
    return attach_data_config(create_model(name), TrainConfig(model=name).data_config()).eval()


def test_stage_maps_follow_the_convolutions():
    model = fresh("digitnet")
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    stages = stage_maps(model, digit)
    assert [maps.shape for _, maps in stages] == [(32, 14, 14), (48, 7, 7), (96, 7, 7), (96, 7, 7)]
    assert all((maps >= 0).all() for _, maps in stages)  # read after each stage's ReLU
    tutorial = stage_maps(fresh("conv3_dense64"), digit)
    assert [maps.shape for _, maps in tutorial] == [(32, 13, 13), (64, 5, 5), (64, 3, 3)]
    assert stage_maps(fresh("mlp_3x256"), digit) == []


def test_filters_feature_maps_and_kernels_of_the_bundled_model(tmp_path, test_split, check_picture):
    model, _ = checkpoint.load()
    digit = test_split[0][0].numpy()
    check_picture(save_png(filters_figure(model), tmp_path / "filters.png"), 800, 150)
    check_picture(save_png(feature_maps_figure(model, digit, "test digit 0"), tmp_path / "maps.png"), 800, 400)
    check_picture(save_png(kernels_figure(model, digit), tmp_path / "kernels.png"), 800, 300)


def test_a_dense_network_shows_its_first_layer_as_28x28_weights(tmp_path, check_picture):
    model = fresh("mlp_3x256")
    assert isinstance(first_layer(model), torch.nn.Linear)
    check_picture(save_png(filters_figure(model), tmp_path / "filters.png"), 800, 150)
    with pytest.raises(ValueError, match="no convolution"):
        feature_maps_figure(model, np.zeros((28, 28), np.uint8), "blank")


def test_the_lesson_kernels_do_what_they_are_called():
    import torch.nn.functional as F

    bar = torch.zeros(1, 1, 9, 9)
    bar[0, 0, 4, :] = 1.0  # a horizontal line

    def response(name):
        kernel = torch.from_numpy(LESSON_KERNELS[name])[None, None]
        return F.conv2d(bar, kernel)[..., 2:-2].abs().sum().item()  # away from the line's ends

    assert response("horizontal edge") > 10 * max(response("vertical edge"), 1e-6)
    assert abs(LESSON_KERNELS["blur"].sum() - 1) < 1e-6  # a blur keeps the ink


def test_montage_places_cells_in_rows():
    cells = [np.full((2, 2, 3), v / 10) for v in range(5)]
    sheet = montage(cells, columns=3, gap=1, head=1)
    assert sheet.shape == (2 * (2 + 1 + 1), 3 * 3 - 1, 3)
    assert sheet[1, 0, 0] == 0.0 and sheet[1, 3, 0] == 0.1 and sheet[5, 3, 0] == 0.4


def test_resuming_a_finished_run_without_curves_draws_them(tmp_path, mnist_dir, check_picture):
    cfg = TrainConfig(model="mlp_3x256", epochs=2, batch_size=128, limit=400, validation_split=0.25, seed=0,
                      augment=False, ema_decay=0.0)
    train(cfg, tmp_path, quiet=True)
    (tmp_path / "curves.png").unlink()  # as a run from before the curves were drawn
    (tmp_path / "history.csv").unlink()
    train(cfg, tmp_path, resume=True, quiet=True)
    check_picture(tmp_path / "curves.png", 1000, 300)
    assert (tmp_path / "history.csv").is_file()


def test_a_test_digit_is_captioned_with_its_label_not_only_its_index(test_split):
    from digitlab.training.figures import caption_of_test_digit

    label = int(test_split[1][0])  # the first test image is a 7
    caption = caption_of_test_digit(0, label)
    assert caption.startswith(f"a {label} ") and "test image 0" in caption and "digit 0" not in caption
