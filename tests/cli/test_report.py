"""`digitlab report` on the command line: JSON out, one-line errors, --overwrite."""

from __future__ import annotations

import json

from digitlab.cli import main


def test_report_json_then_refuses_to_overwrite(tmp_path, mnist_dir, capsys):
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--limit", "300", "--json", "--lang", "zh"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 300 and len(result["files"]) == 8
    assert all((out / name).is_file() for name in ("report.html", "mistakes.png", "kernels.png"))

    assert main(["report", "--out", str(out), "--limit", "300"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--overwrite" in err

    assert main(["report", "--out", str(out), "--limit", "300", "--overwrite"]) == 0
    assert "wrote" in capsys.readouterr().out


def test_bad_source_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such checkpoint" in err and len(err.strip().splitlines()) == 1
    assert main(["report", "--lang", "fr"]) == 2
    assert "invalid choice" in capsys.readouterr().err
