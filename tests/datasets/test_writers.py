"""writers: real handwriting by other writers, split by writer, in MNIST's form, and the pool a run learns from."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.datasets import writers
from digitlab.datasets.writers import (DIGIT_SHAPED, DIGIT_SOURCES, FILES, PARTS, TRAINED_ON, clean_form, image_parts,
                                       load_digits, load_letters, locate, part_of, training_pool)
from digitlab.errors import DataError


def test_the_folder_comes_from_the_setting_or_the_environment_and_is_checked(tmp_path, monkeypatch, tiny_realdata):
    with pytest.raises(DataError, match="DIGITLAB_REALDATA"):
        locate()
    with pytest.raises(DataError, match="missing: "):
        locate(tmp_path)
    tiny_realdata(tmp_path)
    assert locate(tmp_path) == tmp_path
    monkeypatch.setenv("DIGITLAB_REALDATA", str(tmp_path))
    assert locate() == tmp_path


def test_a_pickle_is_never_loaded(tmp_path, tiny_realdata):
    tiny_realdata(tmp_path)
    np.savez(tmp_path / FILES["hwd1000"], images=np.array([object()], dtype=object), labels=np.array([1]))
    with pytest.raises(DataError, match="not a readable"):
        load_digits("hwd1000", "report", tmp_path)


def test_every_writer_is_in_one_part_only():
    assert {part_of(w) for w in range(55)} == set(PARTS)
    assert [part_of(w) for w in (0, 5, 1, 6, 2, 3, 4)] == ["report", "report", "choose", "choose"] + ["train"] * 3
    assert part_of("f3313_11") == part_of("f3313_11")


def test_parts_split_by_writer_on_the_real_files(realdata_dir):
    for source in ("chars74k", "chars74k-letters", "femnist"):
        data = np.load(realdata_dir / FILES[source], allow_pickle=False)
        writers = {part: set(data["writer"][image_parts(source, data) == part]) for part in PARTS}
        for one, other in ((a, b) for a in PARTS for b in PARTS if a < b):   # no writer in two parts
            assert not writers[one] & writers[other], (source, one, other)
        assert bool(writers["train"]) == (source in TRAINED_ON)   # only what the package may ship is learned
    counts = {(s, p): len(load_digits(s, p, realdata_dir)[1]) for s in DIGIT_SOURCES for p in PARTS}
    assert counts[("optdigits", "train")] == 2880 and counts[("hwd1000", "report")] == 1000
    assert counts[("chars74k", "choose")] > 50 and counts[("chars74k", "report")] > 50
    assert sum(counts[("chars74k", p)] for p in PARTS) == 550 and counts[("chars74k", "train")] == 0
    images, labels = load_digits("chars74k", "report", realdata_dir)
    assert images.dtype == np.uint8 and set(labels) == set(range(10))


def test_letters_shaped_like_digits_are_apart(realdata_dir):
    letters, names = load_letters("femnist", "report", realdata_dir)
    shaped, shaped_names = load_letters("femnist", "report", realdata_dir, digit_shaped=True)
    assert len(letters) and len(shaped)
    assert not set(names) & set(DIGIT_SHAPED) and set(shaped_names) <= set(DIGIT_SHAPED)
    with pytest.raises(ValueError, match="unknown source"):
        load_letters("optdigits", "train", realdata_dir)


def test_a_clean_glyph_takes_mnists_form(test_split):
    digit = test_split[0].numpy()[0]
    padded = np.pad(digit, 20)  # the same digit with paper around it: cropped to its ink again
    form = clean_form(padded)
    assert form.shape == (28, 28) and form.dtype == np.uint8
    assert np.corrcoef(form.ravel().astype(float), digit.ravel().astype(float))[0, 1] > 0.8
    assert clean_form(np.zeros((32, 32), np.uint8)) is None


def test_the_pool_is_drawn_once_and_kept(tmp_path, tiny_realdata, monkeypatch):
    folder = tiny_realdata(tmp_path / "real", per_file=10)
    pool = training_pool(folder, seed=0, cache=tmp_path / "cache")
    # optdigits' ten digits are all in its train part (at least the clean form of each); chars74k is never learned
    assert len(pool.digits) == len(pool.labels) >= 10 and pool.digits.dtype == np.uint8
    assert pool.digits.shape[1:] == (28, 28) and set(pool.labels) <= set(range(10))
    assert len(pool.letters) >= 3
    monkeypatch.setattr(writers, "make_pool", lambda *a, **k: pytest.fail("the kept pool was drawn again"))
    again = training_pool(folder, seed=0, cache=tmp_path / "cache")
    assert np.array_equal(again.digits, pool.digits) and np.array_equal(again.labels, pool.labels)
