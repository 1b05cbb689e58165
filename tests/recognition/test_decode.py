"""facts' list of image formats is the only one: every other reader of image files, and the page, takes it there.

The suffixes the command line and training pick out of folders, the extensions Ray reads, and the page's file picker
and its 'not an image' message are checked against ``facts.IMAGE_FORMATS``, so a format added there is added
everywhere, and a list written anywhere else fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from digitlab.recognition.decode import FORMAT_NAMES, FORMATS
from digitlab.recognition.facts import IMAGE_FORMATS, SUFFIXES

STATIC = Path(__file__).resolve().parents[2] / "src" / "digitlab" / "serve" / "static"
NOT_IMAGES = (".txt", ".json", ".heic", ".jfif", ".svg", "")


def test_the_list_says_each_thing_once():
    assert FORMATS == ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")  # what Image.open may try
    assert SUFFIXES == (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
    assert FORMAT_NAMES == "PNG, JPEG, BMP, GIF, TIFF or WebP"
    assert len(set(SUFFIXES)) == len(SUFFIXES) and all(s == s.lower() for s in SUFFIXES)


def test_the_command_line_takes_the_files_named_so_from_a_folder(tmp_path):
    from digitlab.cli.predict import collect_inputs

    for suffix in (*SUFFIXES, *NOT_IMAGES):
        (tmp_path / f"a{suffix}").write_bytes(b"x")
        (tmp_path / f"B{suffix.upper()}").write_bytes(b"x")
    files, _ = collect_inputs([str(tmp_path)], recursive=False)
    assert sorted(Path(name).suffix.lower() for name in files) == sorted(SUFFIXES * 2)


def test_training_on_folders_takes_the_files_named_so():
    from digitlab.datasets.folders import _is_image_name

    assert all(_is_image_name(Path(f"x{suffix.upper()}")) is None for suffix in SUFFIXES)
    for suffix in NOT_IMAGES:
        assert ", ".join(SUFFIXES) in _is_image_name(Path(f"x{suffix}"))


def test_ray_reads_the_files_named_so():
    from digitlab.recognition.cluster import IMAGE_EXTENSIONS

    assert ["." + extension for extension in IMAGE_EXTENSIONS] == list(SUFFIXES)


def test_the_page_accepts_and_names_the_same_formats():
    from fastapi.testclient import TestClient

    from digitlab.serve.app import create_app
    from digitlab.serve.routes.predict import IMAGE_BODY

    page = TestClient(create_app()).get("/").text
    facts = json.loads(re.search(r'<script id="facts" type="application/json">(.*?)</script>', page, re.S)[1])
    assert facts["formats"] == [image_format.name for image_format in IMAGE_FORMATS]
    assert set(facts["accept"].split(",")) == {f.media_type for f in IMAGE_FORMATS} | set(SUFFIXES)
    # the page's own files name no format: the picker's accept and the 415 message come from the facts
    scripts = (STATIC / "i18n.js").read_text() + (STATIC / "index.html").read_text()
    assert not re.findall(r"\b(?:JPEG|BMP|GIF|TIFF|WebP)\b|\.(?:jpe?g|bmp|gif|tiff?|webp)\b", scripts)
    assert scripts.count("{formats}") == 2  # the 415 message, in each language
    # the API's schema names some of the types a body may have, none that decode does not read
    documented = {kind for kind in IMAGE_BODY["requestBody"]["content"] if kind.startswith("image/")}
    assert documented <= {image_format.media_type for image_format in IMAGE_FORMATS}
