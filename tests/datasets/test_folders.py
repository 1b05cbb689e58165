"""Labelled image folders: the three layouts, the file-name rules, the report of what was left out, the cache, and
that every image is prepared exactly as prediction prepares it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from digitlab.datasets import folders
from digitlab.datasets.folders import (BAD_LABEL, NOT_A_DIGIT_LABEL, REFUSED, UNREADABLE, label_from_name,
                                       load_folder, skipped_report)
from digitlab.recognition.preprocess import prepare


@pytest.mark.parametrize("name,label", [
    ("3_anything.png", 3), ("anything_3.jpg", 3), ("anything3.png", 3), ("3.png", 3), ("scan-01-7.png", 7),
    ("5_x_5.png", 5), ("3_img_0042.png", 3), ("photo 8.jpeg", 8),
])
def test_the_name_rules_read_a_label(name, label):
    assert label_from_name(name) == (label, None)


@pytest.mark.parametrize("name,words", [
    ("3_five_5.png", "ambiguous"), ("3_scan2.png", "ambiguous"), ("img_0042.png", "4 digits"),
    ("test_00000.png", "5 digits"), ("12_x.png", "2 digits"), ("photo.png", "no digit"),
])
def test_names_the_rules_cannot_read_are_refused_with_a_reason(name, words):
    label, reason = label_from_name(name)
    assert label is None and words in reason and "\n" not in reason


def test_class_folders_are_read_and_every_problem_reported(labelled_folders):
    layouts, labels = labelled_folders
    data = load_folder(layouts["class folders"], cache=False)
    assert data.layout == "class folders"
    assert len(data) == 30 and sorted(data.labels.tolist()) == sorted(labels.tolist())
    assert not any(p.endswith(".json") for p in data.paths)  # sidecars are not images
    kinds = {s.path: s.kind for s in data.skipped}
    assert kinds == {"3/broken.png": UNREADABLE, "4/blank.png": REFUSED, "stray.png": BAD_LABEL,
                     "misc/other.png": BAD_LABEL}
    assert {s.path: s.reason for s in data.skipped}["4/blank.png"].startswith("blank")
    report = skipped_report(data.skipped, total=34)
    assert report.splitlines()[0] == "skipped 4 of 34 files (1 unreadable, 1 refused, 2 bad label):"


def test_file_names_are_read_and_bad_names_refused_per_file(labelled_folders):
    layouts, labels = labelled_folders
    data = load_folder(layouts["file names"], cache=False)
    assert data.layout == "file names" and len(data) == 30
    assert sorted(data.labels.tolist()) == sorted(labels.tolist())
    reasons = {s.path: s.reason for s in data.skipped}
    assert set(reasons) == {"3_seven_7.png", "img_0042.png", "notes.txt"}
    assert "ambiguous" in reasons["3_seven_7.png"] and "image" in reasons["notes.txt"]


def test_a_csv_is_read_as_export_samples_writes_it(labelled_folders, tmp_path, mnist_dir):
    layouts, labels = labelled_folders
    data = load_folder(layouts["csv"], cache=False)
    assert data.layout == "csv" and data.labels.tolist() == labels.tolist()
    reasons = {s.path: (s.kind, s.reason) for s in data.skipped}
    assert reasons["img/missing.png"][0] == UNREADABLE
    assert any("seven" in reason for kind, reason in reasons.values() if kind == BAD_LABEL)
    assert any("two columns" in reason for _, reason in reasons.values())
    assert any("listed again" in reason for _, reason in reasons.values())

    from digitlab.datasets.samples import export_samples

    export_samples("test", 20, tmp_path / "samples", mnist_dir)
    exported = load_folder(tmp_path / "samples", cache=False)
    from digitlab.training.data import load_mnist

    assert exported.layout == "csv" and exported.labels.tolist() == load_mnist("test", mnist_dir)[1][:20].tolist()
    assert load_folder(tmp_path / "samples" / "labels.csv", cache=False).labels.tolist() == exported.labels.tolist()


def test_images_are_prepared_exactly_as_prediction_prepares_them(labelled_folders):
    layouts, _ = labelled_folders
    data = load_folder(layouts["class folders"], cache=False)
    for name, image in zip(data.paths[:5], data.images[:5]):
        expected = prepare(layouts["class folders"] / name).glyphs[0].image
        assert np.array_equal(image, np.round(expected * 255).astype(np.uint8))


def test_not_a_digit_folder_and_a_model_without_that_output(tmp_path, labelled_folders):
    from PIL import Image, ImageDraw

    layouts, _ = labelled_folders
    image = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(image).rectangle((30, 30, 90, 90), outline=0, width=6)  # a square: no digit
    (tmp_path / "not_a_digit").mkdir()
    image.save(tmp_path / "not_a_digit" / "square.png")
    (tmp_path / "7").mkdir()
    for path in (layouts["class folders"] / "7").glob("*.png"):
        (tmp_path / "7" / path.name).write_bytes(path.read_bytes())
    data = load_folder(tmp_path, cache=False)
    assert NOT_A_DIGIT_LABEL in data.labels.tolist()
    assert data.summary()["per_class"] == {"7": 3, "not a digit": 1}
    images, targets, paths, dropped = folders.for_model(data, [str(d) for d in range(10)])
    assert len(images) == 3 and set(targets.tolist()) == {7} and [d.path for d in dropped] == ["not_a_digit/square.png"]
    _, targets, _, dropped = folders.for_model(data, [*map(str, range(10)), "not a digit"])
    assert sorted(targets.tolist()) == [7, 7, 7, 10] and not dropped


def test_the_cache_decodes_only_what_changed_and_holds_no_pickle(tmp_path, labelled_folders):
    layouts, _ = labelled_folders
    folder = tmp_path / "mine"
    for path in (layouts["class folders"] / "1").glob("*"):
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "1" / path.name).write_bytes(path.read_bytes())
    first = load_folder(folder)
    assert first.decoded == 3 and len(first) == 3
    second = load_folder(folder)
    assert second.decoded == 0 and np.array_equal(second.images, first.images) and second.sha256 == first.sha256
    cache = folders.cache_file(folder, "class folders", "auto")
    with np.load(cache, allow_pickle=False) as stored:  # plain arrays: loading runs no code
        assert stored["images"].dtype == np.uint8
    changed = sorted((folder / "1").glob("*.png"))[0]
    changed.write_bytes((layouts["class folders"] / "2" / "d06.png").read_bytes())
    os.utime(changed, ns=(1, 1))
    third = load_folder(folder)
    assert third.decoded == 1 and third.sha256 != first.sha256
    cache.write_bytes(b"garbage")  # a damaged cache is made again, never an error
    assert load_folder(folder).decoded == 3


def test_what_is_not_a_data_set_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        load_folder(tmp_path / "nope")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="a file"):
        load_folder(tmp_path / "a.png")
