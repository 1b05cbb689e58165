"""parallel: worker processes give the same answers as one process, in input order unless asked otherwise."""

import pytest
from PIL import Image

from digitlab.recognition.parallel import CHUNK, WorkerSettings, load_single_threaded, recognise_files


@pytest.fixture(scope="module")
def files(test_split, tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    images = test_split[0][:2 * CHUNK + 5].numpy()
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{index:03d}.png"
        Image.fromarray(255 - image).resize((84, 84)).save(path)  # dark ink on white paper
        paths.append(str(path))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths.insert(7, str(folder / "broken.png"))
    return paths


def test_two_workers_answer_as_one_process_does(files):
    settings = WorkerSettings(backend="onnx")
    expected = [p.to_dict() for p in load_single_threaded(settings).predict(files)]
    ordered = [p.to_dict() for p in recognise_files(files, 2, settings)]
    assert ordered == expected
    assert ordered[7]["error"] and sum(r["digit"] is not None for r in ordered) > len(files) // 2
    unordered = [p.to_dict() for p in recognise_files(files, 2, settings, ordered=False)]
    assert sorted(unordered, key=lambda r: r["path"]) == sorted(expected, key=lambda r: r["path"])


def test_a_model_the_workers_cannot_load_is_one_error(files, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        list(recognise_files(files, 2, WorkerSettings(model=str(broken))))
    with pytest.raises(ValueError, match="at least 1"):
        list(recognise_files(files, 0))
