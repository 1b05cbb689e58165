"""Saving a corrected drawing (serve.samples): the class-folder layout, the sidecar, the pixels kept, nothing
replaced, and refusals that write nothing."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from digitlab.labels import CLASS_FOLDERS
from digitlab.recognition.decode import ImageError
from digitlab.serve.samples import save_sample


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_drawing_is_saved_in_its_label_s_folder_with_a_sidecar(tmp_path):
    drawing = np.full((280, 280, 4), 255, np.uint8)
    drawing[60:220, 130:150, :3] = 17  # a dark stroke on white, as a canvas gives it (RGBA)
    model = {"arch": "digitnet", "backend": "onnx", "file": "bundled"}
    path = save_sample(tmp_path, "1", png(drawing), answer="7", model=model, source="body")
    assert path.parent == tmp_path / "1" and path.suffix == ".png"
    saved = np.asarray(Image.open(path))
    assert saved.shape == (280, 280) and saved.dtype == np.uint8  # gray, full size
    assert saved[100, 140] == 17 and saved[10, 10] == 255
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["label"] == "1" and sidecar["answer"] == "7" and sidecar["model"] == model
    assert sidecar["time"].endswith("+00:00") and sidecar["size"] == [280, 280] and sidecar["source"] == "body"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted([path.name, path.stem + ".json"])


def test_nothing_is_replaced_and_every_label_has_a_folder(tmp_path):
    data = png(np.zeros((28, 28), np.uint8))
    paths = [save_sample(tmp_path, "3", data, None, {}) for _ in range(5)]
    assert len(set(paths)) == 5 and all(p.is_file() and p.with_suffix(".json").is_file() for p in paths)
    assert set(CLASS_FOLDERS) == {*map(str, range(10)), "not_a_digit"}
    assert save_sample(tmp_path, "not_a_digit", data, "8", {}).parent.name == "not_a_digit"


@pytest.mark.parametrize("label", ["10", "", "../x", "a", " 3"])
def test_a_bad_label_writes_nothing(tmp_path, label):
    with pytest.raises(ValueError, match="label must be"):
        save_sample(tmp_path, label, png(np.zeros((28, 28), np.uint8)), None, {})
    assert not any(tmp_path.iterdir())


def test_an_unreadable_or_oversized_image_writes_nothing(tmp_path):
    with pytest.raises(ImageError) as refused:
        save_sample(tmp_path, "3", b"not a picture", None, {})
    assert refused.value.kind == "not an image" or "not an image" in str(refused.value)
    with pytest.raises(ImageError, match="too large"):
        save_sample(tmp_path, "3", png(np.zeros((100, 100), np.uint8)), None, {}, max_pixels=5000)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
