"""cluster: Ray Data on a local Ray (two CPUs) gives the very rows `digitlab predict --out` writes, errors included."""

import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from digitlab.cli import main  # noqa: E402
from digitlab.recognition.cluster import RecognizeBatch, read_images, recognise_dataset  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One Ray for the module: starting it is most of these tests' time."""
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(test_split, tmp_path_factory):
    """MNIST test digits as dark ink on paper, a blank page, and a file that is no image."""
    folder = tmp_path_factory.mktemp("images")
    for index, image in enumerate(test_split[0][:12].numpy()):
        Image.fromarray(255 - image).resize((84, 84)).save(folder / f"{index:03d}.png")
    Image.new("L", (120, 90), 245).save(folder / "blank.jpg")
    (folder / "notes.png").write_text("not an image")
    return folder


def by_path(rows):
    """Rows in path order; an error's wording says "file" for a path and "data" for bytes, so only its presence is
    compared."""
    return sorted(({**row, "error": row["error"] and row["error"].replace("the data is", "the file is")}
                   for row in rows), key=lambda row: row["path"])


@pytest.fixture(scope="module")
def expected(folder, tmp_path_factory):
    """What `digitlab predict --out x.parquet` writes for the folder, on the same ONNX model."""
    out = tmp_path_factory.mktemp("predict") / "answers.parquet"
    assert main(["predict", str(folder), "--backend", "onnx", "--jobs", "1", "--out", str(out)]) == 1  # notes.png
    return by_path(pq.read_table(out).to_pylist())


def test_ray_data_answers_as_digitlab_predict_does(local_ray, folder, expected):
    rows = by_path(recognise_dataset(read_images(str(folder))).take_all())
    assert rows == expected
    assert len(rows) == 14 and [r["path"].rsplit("/", 1)[-1] for r in rows if r["error"]] == ["notes.png"]
    assert sum(r["digit"] is not None for r in rows) >= 10


def test_predict_ray_writes_a_folder_of_parquet(local_ray, folder, expected, tmp_path, capsys):
    out = tmp_path / "answers"
    listing = tmp_path / "list.txt"  # the same files named in a list, as an archive's index would
    listing.write_text("".join(f"{row['path']}\n" for row in expected))
    assert main(["predict", "--files-from", str(listing), "--ray", "--out", str(out)]) == 0
    assert by_path(pq.read_table(out).to_pylist()) == expected
    assert main(["predict", str(folder), "--ray", "--out", str(out)]) == 2  # never replaced unasked
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", "a.png", "--ray", str(folder), "--out", str(out)]) == 2  # a folder taken for an address
    assert "put the paths before --ray" in capsys.readouterr().err
    assert main(["predict", str(folder), "--ray", "--json", "--out", str(tmp_path / "other")]) == 2
    assert "--json is not for --ray" in capsys.readouterr().err


def test_the_batch_class_loads_onnx_only(tmp_path):
    with pytest.raises(ValueError, match="export"):
        RecognizeBatch(model=str(tmp_path / "model.safetensors"))
