"""outfile: answers appended in whole chunks, continued with resume, never replaced unasked."""

import csv
import json

import pytest

from digitlab.recognition.formats import COLUMNS
from digitlab.recognition.outfile import ResultsFile, kind_for
from digitlab.recognition.predict import DigitResult, Prediction


def answer(index: int) -> Prediction:
    digit = index % 10
    return Prediction(f"img/{index:03d}.png", digits=[DigitResult(digit, 0.99, [(digit, 0.99)], [0.0] * 10,
                                                                  (0, 0, 5, 5))])


def rows(path):
    if path.suffix == ".csv":
        return [row["path"] for row in csv.DictReader(open(path))]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).column("path").to_pylist()
    return [json.loads(line)["path"] for line in open(path)]


def test_kind_from_the_suffix_or_the_option(tmp_path):
    assert [kind_for("a.jsonl"), kind_for("a.CSV"), kind_for("a.parquet"), kind_for("a.txt", "json")] == \
        ["json", "csv", "parquet", "json"]
    with pytest.raises(ValueError, match="--json or --csv"):
        kind_for("a.txt")
    with pytest.raises(ValueError, match="Parquet"):
        kind_for("a.parquet", "csv")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_chunks_then_resume_add_the_rest(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"out{suffix}"
    with ResultsFile(path, chunk_size=4) as out:
        for index in range(10):
            out.write(answer(index))
            if index == 5 and suffix != ".parquet":  # chunks are on disk while the job runs
                assert rows(path) == [f"img/{i:03d}.png" for i in range(4)]
    assert out.written == 10 and rows(path) == [f"img/{i:03d}.png" for i in range(10)]

    with pytest.raises(ValueError, match="--resume .* --overwrite"):
        ResultsFile(path)
    with ResultsFile(path, resume=True) as out:
        assert out.done == {f"img/{i:03d}.png" for i in range(10)}
        for index in range(10, 13):
            out.write(answer(index))
    assert rows(path) == [f"img/{i:03d}.png" for i in range(13)]

    with ResultsFile(path, overwrite=True) as out:
        out.write(answer(20))
    assert rows(path) == ["img/020.png"]


def test_a_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    path = tmp_path / "out.jsonl"
    with ResultsFile(path) as out:
        for index in range(3):
            out.write(answer(index))
    with open(path, "a") as file:
        file.write('{"path": "img/003.png", "dig')  # the kill came in the middle of a write
    with ResultsFile(path, resume=True) as out:
        assert out.done == {"img/000.png", "img/001.png", "img/002.png"}
        out.write(answer(3))
    assert rows(path) == [f"img/{i:03d}.png" for i in range(4)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_ctrl_c_just_after_a_chunk_is_written_does_not_write_it_again(tmp_path, monkeypatch, suffix):
    import os

    path = tmp_path / f"out{suffix}"
    real_fsync, interrupted = os.fsync, []

    def fsync_then_ctrl_c(fd):  # the chunk is on disk; Ctrl-C lands before the buffer is cleared
        real_fsync(fd)
        if not interrupted and path.exists() and rows(path):
            interrupted.append(fd)
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", fsync_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with ResultsFile(path, chunk_size=4) as out:
            for index in range(10):
                out.write(answer(index))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert interrupted and rows(path) == [f"img/{i:03d}.png" for i in range(4)]
    with ResultsFile(path, resume=True) as out:
        for index in range(10):
            if f"img/{index:03d}.png" not in out.done:
                out.write(answer(index))
    assert rows(path) == [f"img/{i:03d}.png" for i in range(10)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_resume_keeps_one_answer_per_input_of_a_file_that_holds_some_twice(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    path, twice = tmp_path / f"out{suffix}", tmp_path / f"twice{suffix}"
    with ResultsFile(twice) as out:  # as two runs' files put together: inputs 2 and 3 answered in both
        for index in [0, 1, 2, 3, 2, 3]:
            out.write(answer(index))
    twice.rename(path)
    with ResultsFile(path, resume=True) as out:
        assert out.done == {f"img/{i:03d}.png" for i in range(4)}
        out.write(answer(4))
    assert rows(path) == [f"img/{i:03d}.png" for i in range(5)]


def test_a_file_that_is_not_ours_is_refused_on_resume(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("name,value\na,1\n")
    with pytest.raises(ValueError, match="header"):
        ResultsFile(other, resume=True)
    notes = tmp_path / "notes.jsonl"
    notes.write_text("hello\n")
    with pytest.raises(ValueError, match="line 1"):
        ResultsFile(notes, resume=True)
    assert other.read_text() == "name,value\na,1\n" and notes.read_text() == "hello\n"


def test_an_error_before_the_first_answer_makes_no_file(tmp_path):
    path = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with ResultsFile(path):
            raise RuntimeError("the model could not be loaded")
    assert not path.exists()
    with pytest.raises(KeyboardInterrupt):
        with ResultsFile(path):
            raise KeyboardInterrupt  # Ctrl-C before any answer: a valid, empty output
    assert path.read_text() == ",".join(COLUMNS) + "\n"


def test_parquet_is_published_whole_and_typed(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "out.parquet"
    out = ResultsFile(path, chunk_size=2)
    for index in range(5):
        out.write(answer(index))
    assert not path.exists()  # its footer comes last: the file appears whole, when the job ends
    out.close()
    table = pq.read_table(path)
    assert table.column_names == list(COLUMNS) and table.column("digit").to_pylist() == [0, 1, 2, 3, 4]
    assert [f.name for f in tmp_path.iterdir()] == ["out.parquet"]  # no temporary file left behind
