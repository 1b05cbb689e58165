"""ServeSettings: one object, checked where it is made, the same through JSON (as a worker process receives it) and
from the command line (whose messages name its options)."""

import math
from pathlib import Path

import pytest

from digitlab.recognition.facts import MAX_PIXELS
from digitlab.serve.settings import Limits, ServeSettings, SettingError


def test_json_round_trip_keeps_every_value(served_onnx):
    settings = ServeSettings(served_onnx, threshold=0.25, processes=True, workers=3, threads=2, worker_nice=0,
                             allowed_hosts=("localhost", "127.0.0.1"),
                             limits=Limits(max_upload_bytes=1000, max_batch_bytes=5000, max_batch_files=2,
                                           max_pixels=12_345))
    again = ServeSettings.from_json(settings.to_json())
    assert again == settings and isinstance(again.limits, Limits)
    assert again.model == str(served_onnx) and again.backend == "onnx"  # a path becomes a string, the backend
    assert ServeSettings.from_json(ServeSettings().to_json()) == ServeSettings()  # follows the file's suffix


def test_the_backend_follows_the_file_unless_given(served_checkpoint, served_onnx):
    assert ServeSettings(served_checkpoint).backend == ("onnx" if served_checkpoint.with_suffix(".onnx").is_file()
                                                         else "torch")
    assert ServeSettings(served_onnx).backend == "onnx"
    assert ServeSettings(Path(served_onnx), backend="torch").backend == "torch"
    assert ServeSettings().backend == "onnx"  # the bundled model's own export ships beside it


def test_one_default_pixel_limit():
    # the server refused images over 40 megapixels that `digitlab predict` reads (up to facts.MAX_PIXELS)
    assert Limits().max_pixels == ServeSettings().limits.max_pixels == MAX_PIXELS


@pytest.mark.parametrize("changes,name,words", [
    ({"backend": "tensorflow"}, "backend", "must be one of"),
    ({"model": "/no/such/model.onnx"}, "model", "no such file"),
    ({"threshold": 1.5}, "threshold", "between 0 and 1"),
    ({"threshold": math.nan}, "threshold", "between 0 and 1"),
    ({"threshold": "high"}, "threshold", "between 0 and 1"),
    ({"processes": 2}, "processes", "True or False"),
    ({"workers": 0}, "workers", "at least 1"),
    ({"workers": 1.5}, "workers", "at least 1"),
    ({"threads": 0}, "threads", "at least 1"),
    ({"worker_nice": -5}, "worker_nice", "between 0 and 19"),
    ({"worker_nice": 20}, "worker_nice", "between 0 and 19"),
    ({"log_format": "xml"}, "log_format", "must be one of text, json"),
    ({"limits": {"max_pixels": 10}}, "limits", "must be a Limits"),
])
def test_bad_values_are_refused_with_a_clear_message(changes, name, words):
    with pytest.raises(SettingError, match=words) as refused:
        ServeSettings(**changes)
    assert refused.value.name == name and isinstance(refused.value, ValueError)
    assert str(refused.value).startswith(name) and "\n" not in str(refused.value)


@pytest.mark.parametrize("field", ["max_upload_bytes", "max_batch_bytes", "max_batch_files", "max_pixels"])
def test_bad_limits_are_refused(field):
    with pytest.raises(SettingError, match=f"^{field} must be a whole number"):
        Limits(**{field: 0})


@pytest.mark.parametrize("text,words", [
    ("not json", "not JSON"),
    ("[1, 2]", "expected an object"),
    ('{"model": null, "colour": "blue"}', "colour"),
    ('{"limits": {"max_pixels": 10, "depth": 3}}', "limits"),
    ('{"threshold": 7}', "threshold must be between 0 and 1"),
])
def test_from_json_refuses_what_to_json_does_not_write(text, words):
    with pytest.raises(ValueError, match=words):
        ServeSettings.from_json(text)


def test_the_command_line_names_its_own_options(capsys):
    from digitlab.cli import main

    for argv, words in ((["--threads", "0"], "--threads must be at least 1"),
                        (["--workers", "0"], "--workers must be at least 1"),
                        (["--max-upload-mb", "0"], "--max-upload-mb must be a positive number"),
                        (["--max-upload-mb", "inf"], "--max-upload-mb must be a positive number"),
                        (["--threshold", "-1"], "--threshold must be between 0 and 1")):
        assert main(["serve", *argv]) == 2
        assert words in capsys.readouterr().err, argv


def test_the_command_line_refuses_a_port_it_cannot_use_and_an_onnx_backend_for_a_checkpoint(capsys, served_checkpoint,
                                                                                              tmp_path):
    import shutil
    import socket

    from digitlab.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--backend", "onnx", "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err and len(err.splitlines()) == 1
        assert "in use" in err and "permission" not in err
    for port in ("99999", "0", "http"):
        assert main(["serve", "--port", port]) == 2
        assert "--port" in capsys.readouterr().err
    alone = tmp_path / "alone.safetensors"  # no export beside it
    shutil.copy(served_checkpoint, alone)
    assert main(["serve", "--backend", "onnx", "--model", str(alone)]) == 2
    assert "the onnx backend runs .onnx files" in capsys.readouterr().err


def test_a_port_the_user_may_not_open_is_said_to_need_privileges_not_to_be_taken(capsys, monkeypatch):
    import errno
    import socket

    from digitlab.cli import main

    def refused(self, address):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refused)  # as binding port 80 goes for a user who is not root
    assert main(["serve", "--backend", "onnx", "--port", "80"]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:80: permission denied" in err and "below 1024 need privileges" in err
    assert "another server" not in err and len(err.splitlines()) == 1


def test_serve_with_a_model_that_cannot_be_loaded_ends_in_one_line(tmp_path, capfd):
    import socket

    from digitlab.cli import main

    corrupt = tmp_path / "model.safetensors"
    corrupt.write_bytes(b"not a checkpoint at all" * 40)
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["serve", "--model", str(corrupt), "--port", str(port)]) == 2
    err = capfd.readouterr().err
    assert "not a readable safetensors checkpoint" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_model_no_worker_can_load_is_said_once_not_once_per_worker(tmp_path, capfd):
    import socket

    from digitlab.cli import main

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["serve", "--model", str(broken), "--workers", "3", "--port", str(port)]) == 2
    err = capfd.readouterr().err
    assert "not a readable ONNX model" in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_the_command_line_takes_the_protection_options(monkeypatch):
    from digitlab.cli import build_parser
    from digitlab.cli.serve import serve_settings

    monkeypatch.setenv("DIGITLAB_API_KEY", "e" * 20)
    args = build_parser().parse_args(["serve", "--rate-limit", "30", "--cors-origin", "https://a.example/",
                                      "--cors-origin", "https://b.example"])
    settings = serve_settings(args)
    assert settings.api_key == "e" * 20 and settings.rate_per_minute == 30
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert ServeSettings.from_json(settings.to_json()) == settings
    monkeypatch.delenv("DIGITLAB_API_KEY")
    assert serve_settings(build_parser().parse_args(["serve"])).api_key is None
