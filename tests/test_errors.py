"""errors.one_line: every message that quotes a library's error is one line, cut at one length, and says when it
was cut."""

import pytest

from digitlab.errors import one_line


def test_one_line_joins_lines_and_marks_a_cut():
    assert one_line("first\n  second\tthird") == "first second third"
    long = one_line("x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("...")
    assert one_line("y" * 50, limit=50) == "y" * 50
    assert one_line(KeyError()) == "KeyError"  # an exception without text still says something


class Chatty(Exception):
    def __str__(self):
        return "first line\n" + "detail " * 300


def test_an_unreadable_onnx_file_is_one_line_cut_like_the_others(tmp_path, monkeypatch):
    import onnxruntime

    from digitlab.recognition.engine import OnnxEngine

    def refuse(*args, **kwargs):
        raise Chatty()

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"whatever")
    with pytest.raises(ValueError) as refused:
        OnnxEngine(model)
    assert f"({one_line(Chatty())})" in str(refused.value) and "\n" not in str(refused.value)


def test_an_unreadable_image_is_one_line_cut_like_the_others(monkeypatch):
    from digitlab.recognition import decode

    def refuse(*args, **kwargs):
        raise OSError(str(Chatty()))

    monkeypatch.setattr(decode.Image, "open", refuse)
    with pytest.raises(decode.ImageError) as refused:
        decode.decode(b"GIF89a" + bytes(100))
    assert one_line(OSError(str(Chatty()))) in str(refused.value) and "\n" not in str(refused.value)
