"""digitlab predict / export-samples: output shapes, exit codes and per-file errors, through cli.main."""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from digitlab.cli import main


@pytest.fixture(scope="module")
def samples(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("samples")
    assert main(["export-samples", "--count", "6", "--data-dir", str(mnist_dir), str(out)]) == 0
    return out


def test_export_samples_writes_pngs_and_labels(samples, test_split):
    rows = list(csv.DictReader(open(samples / "labels.csv")))
    assert [r["file"] for r in rows] == [f"test_{i:05d}.png" for i in range(6)]
    assert [int(r["label"]) for r in rows] == test_split[1][:6].tolist()
    image = Image.open(samples / "test_00000.png")
    assert image.size == (28, 28) and image.mode == "L"
    assert (np.asarray(image) == test_split[0][0].numpy()).all()


def test_export_samples_refuses_a_bad_count(tmp_path, mnist_dir, capsys):
    assert main(["export-samples", "--count", "0", "--data-dir", str(mnist_dir), str(tmp_path)]) == 2
    assert "cannot export" in capsys.readouterr().err


def test_predict_table_json_csv(samples, small_model_path, test_split, capsys):
    model = ["--model", str(small_model_path)]
    assert main(["predict", str(samples), *model]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("path") and len(table) == 7

    assert main(["predict", str(samples), "--json", "--threshold", "0", *model]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 6 and all({"path", "digit", "confidence", "top3"} <= set(line) for line in lines)
    assert sum(line["digit"] == label for line, label in zip(lines, test_split[1][:6].tolist())) >= 5

    assert main(["predict", str(samples), "--csv", "--multi", *model]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 6 and {"path", "number", "digits", "boxes", "error"} <= set(rows[0])


def test_bad_files_are_reported_and_the_rest_runs(samples, small_model_path, tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    good = str(samples / "test_00000.png")
    code = main(["predict", "--json", "--model", str(small_model_path), good, str(tmp_path / "empty.png"),
                 str(tmp_path / "notes.png"), str(tmp_path / "missing.jpg")])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1 and len(lines) == 4
    assert lines[0].get("error") is None and lines[0]["digit"] is not None
    assert ["empty file" in lines[1]["error"], "not an image" in lines[2]["error"],
            "no such file" in lines[3]["error"]] == [True, True, True]
    assert "3 of 4 inputs could not be read" in captured.err


def test_a_list_file_names_the_inputs(samples, small_model_path, tmp_path, capsys, monkeypatch):
    import io as stdio
    model = ["--model", str(small_model_path), "--json", "--threshold", "0"]
    assert main(["predict", str(samples), *model]) == 0
    expected = capsys.readouterr().out
    names = sorted(str(f) for f in samples.glob("*.png"))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(names[:2]) + "\n\n" + str(samples) + "\n")  # files, a blank line, a folder
    assert main(["predict", "--files-from", str(listing), *model]) == 0
    assert capsys.readouterr().out.splitlines() == [*expected.splitlines()[:2], *expected.splitlines()]
    monkeypatch.setattr("sys.stdin", stdio.StringIO("\n".join(names) + "\n"))
    assert main(["predict", "--files-from", "-", *model]) == 0
    assert capsys.readouterr().out == expected
    (tmp_path / "empty.txt").write_text("\n\n")
    assert main(["predict", "--files-from", str(tmp_path / "empty.txt"), *model]) == 2
    assert "names no paths" in capsys.readouterr().err


def test_a_list_with_a_line_longer_than_any_path_is_refused(tmp_path, capsys):
    listing = tmp_path / "no-list.bin"
    listing.write_bytes(b"\x00" * 200_000)  # no line break at all, as a binary file handed over by mistake
    assert main(["predict", "--files-from", str(listing)]) == 2
    assert "line 1: longer than" in capsys.readouterr().err


def test_explain_into_a_missing_folder_names_it_and_makes_nothing(samples, tmp_path, capsys):
    image = str(samples / "test_00000.png")
    assert main(["predict", "--explain", str(tmp_path / "none" / "dir" / "out.png"), image]) == 2
    assert f"the folder {tmp_path / 'none' / 'dir'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_two_digits_without_multi_suggest_multi(test_split, tmp_path, capsys):
    digits = test_split[0][:2].numpy()  # a 7 and a 2, side by side with room between them
    row = np.pad(np.concatenate([digits[0], np.zeros((28, 6), np.uint8), digits[1]], 1), 6)
    Image.fromarray(255 - row).resize((row.shape[1] * 4, row.shape[0] * 4)).save(tmp_path / "number.png")
    assert main(["predict", "--json", str(tmp_path / "number.png")]) == 0
    reason = json.loads(capsys.readouterr().out)["reason"]
    assert reason.startswith("not one digit:") and "--multi" in reason


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_files_from_dev_zero_ends_at_once_with_one_line():
    import resource

    def small_memory():  # were the endless line read whole, this process would fail instead of growing for ever
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    result = subprocess.run([sys.executable, "-m", "digitlab", "predict", "--files-from", "/dev/zero"],
                            capture_output=True, text=True, timeout=120, preexec_fn=small_memory)
    assert result.returncode == 2 and "longer than" in result.stderr and "Traceback" not in result.stderr


def test_folders_recursive_and_empty(samples, small_model_path, tmp_path, capsys):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "seven.png").write_bytes((samples / "test_00000.png").read_bytes())
    model = ["--model", str(small_model_path), "--json"]
    assert main(["predict", str(tmp_path / "a"), *model]) == 1  # no images at the top: reported, exit 1
    assert "no image files" in capsys.readouterr().out
    assert main(["predict", "--recursive", str(tmp_path / "a"), *model]) == 0
    assert json.loads(capsys.readouterr().out)["path"].endswith("seven.png")


def test_a_folder_says_which_entries_named_like_images_it_did_not_read(samples, small_model_path, tmp_path, capsys):
    import os

    (tmp_path / "a.png").write_bytes((samples / "test_00000.png").read_bytes())
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    os.mkfifo(tmp_path / "pipe.png")
    assert main(["predict", str(tmp_path), "--model", str(small_model_path), "--json"]) == 1
    answers = {json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line) for line in
               capsys.readouterr().out.splitlines()}
    assert set(answers) == {"a.png", "folder.png", "gone.png", "loop.png", "pipe.png"}
    assert answers["a.png"]["digit"] == 7 and "error" not in answers["a.png"]
    assert "folder" in answers["folder.png"]["error"] and "symbolic link" in answers["gone.png"]["error"]
    assert "symbolic link" in answers["loop.png"]["error"] and "FIFO" in answers["pipe.png"]["error"]


def test_a_file_name_with_a_newline_keeps_the_table_one_line_per_file(samples, small_model_path, tmp_path, capsys):
    odd = tmp_path / "two\nlines.png"
    odd.write_bytes((samples / "test_00000.png").read_bytes())
    assert main(["predict", str(odd), str(samples / "test_00001.png"), "--model", str(small_model_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "two\\nlines.png" in lines[1]  # header, then one line per file


def test_explain_writes_a_figure(samples, small_model_path, tmp_path, capsys):
    out = tmp_path / "explain.png"
    model = ["--model", str(small_model_path)]
    assert main(["predict", str(samples / "test_00001.png"), "--explain", str(out), *model]) == 0
    figure = Image.open(out)
    assert figure.format == "PNG" and figure.size[0] > 600
    assert main(["predict", str(samples), "--explain", str(out), *model]) == 2  # one image only
    assert "one image" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["predict"], "name the images"),
    (["predict", "--files-from", "missing.txt"], "cannot read the list missing.txt"),
    (["predict", "x.png", "--threshold", "2"], "threshold"),
    (["predict", "x.png", "--polarity", "sideways"], "invalid choice"),
    (["predict", "x.png", "--json", "--csv"], "not allowed"),
    (["predict", "x.png", "--model", "missing.safetensors"], "no such checkpoint"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle, small_model_path, capsys):
    if "--threshold" in args:
        args = [*args, "--model", str(small_model_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_truncated_file_is_one_line_not_a_traceback(samples, small_model_path, tmp_path):
    data = (samples / "test_00002.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    result = subprocess.run([sys.executable, "-m", "digitlab.cli", "predict", str(tmp_path / "cut.png"),
                             str(samples / "test_00002.png"), "--model", str(small_model_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert "truncated" in result.stdout and len(result.stdout.splitlines()) == 3


@pytest.fixture(scope="module")
def many(test_split, tmp_path_factory):
    """Enough files for two workers: MNIST test digits as dark ink on 84 px white paper."""
    folder = tmp_path_factory.mktemp("many")
    for index, image in enumerate(test_split[0][:40].numpy()):
        Image.fromarray(255 - image).resize((84, 84)).save(folder / f"{index:03d}.png")
    return folder


def test_jobs_out_and_resume(many, tmp_path, capsys):
    onnx = ["--backend", "onnx"]
    assert main(["predict", str(many), "--json", "--jobs", "1", *onnx]) == 0
    one = capsys.readouterr().out.splitlines()
    out = tmp_path / "answers.jsonl"
    assert main(["predict", str(many), "--jobs", "2", "--out", str(out), *onnx]) == 0
    assert out.read_text().splitlines() == one  # the same answers, in input order
    assert "wrote 40 answers" in capsys.readouterr().err

    assert main(["predict", str(many), "--jobs", "2", "--out", str(out), *onnx]) == 2  # never replaced unasked
    assert "--resume" in capsys.readouterr().err and out.read_text().splitlines() == one
    out.write_text("\n".join(one[:25]) + "\n")
    assert main(["predict", str(many), "--jobs", "2", "--out", str(out), "--resume", *onnx]) == 0
    assert out.read_text().splitlines() == one and "25 inputs it held already" in capsys.readouterr().err

    table = tmp_path / "answers.csv"
    assert main(["predict", str(many), "--jobs", "2", "--unordered", "--out", str(table), *onnx]) == 0
    rows = list(csv.DictReader(open(table)))
    assert sorted(r["path"] for r in rows) == [json.loads(line)["path"] for line in one]
    assert main(["predict", str(many), "--resume", *onnx]) == 2
    assert "--out FILE" in capsys.readouterr().err


def test_ctrl_c_leaves_a_valid_file_that_resume_finishes(many, tmp_path):
    import os
    import signal
    import time

    folder = tmp_path / "big"
    folder.mkdir()
    for copy in range(8):  # 320 files: long enough to be interrupted
        for source in many.iterdir():
            (folder / f"{copy}-{source.name}").write_bytes(source.read_bytes())
    out = tmp_path / "answers.csv"
    command = [sys.executable, "-m", "digitlab", "predict", str(folder), "--jobs", "2", "--backend", "onnx",
               "--out", str(out)]
    # Ctrl-C as in a terminal, even where this test runs in the background (which starts its children with SIGINT
    # ignored, and Python keeps it so).
    job = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and out.stat().st_size > 100):
        time.sleep(0.05)
    running = job.poll() is None
    os.killpg(job.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
    err = job.communicate(timeout=60)[1]
    if running:
        assert job.returncode == 130 and "--resume" in err and "Traceback" not in err
    finished = list(csv.DictReader(open(out)))
    assert all(row["digit"] or row["reason"] for row in finished)  # every row whole
    assert subprocess.run(command + ["--resume"], capture_output=True, timeout=120).returncode == 0
    rows = [row["path"] for row in csv.DictReader(open(out))]
    assert sorted(rows) == sorted(str(f) for f in folder.iterdir()) and len(set(rows)) == len(rows)
