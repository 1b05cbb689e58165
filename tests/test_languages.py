"""One list of languages (digitlab.languages), read by the page and by `digitlab report`: each has its words for
every code there, by the same codes, and `--lang zh` still means Simplified Chinese."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from digitlab.languages import ALIASES, LANGUAGES, language

STATIC = Path(__file__).resolve().parents[1] / "src" / "digitlab" / "serve" / "static"


def test_codes_and_aliases():
    assert list(LANGUAGES) == ["en", "zh-CN"]
    assert [language(code) for code in ("en", "zh-CN", "zh")] == ["en", "zh-CN", "zh-CN"]
    assert set(ALIASES.values()) <= set(LANGUAGES)
    with pytest.raises(ValueError, match="lang must be one of en, zh-CN, not 'fr'"):
        language("fr")


def test_the_page_offers_the_languages_and_has_words_for_each():
    from fastapi.testclient import TestClient

    from digitlab.serve.app import create_app

    page = TestClient(create_app()).get("/").text
    facts = json.loads(re.search(r'<script id="facts" type="application/json">(.*?)</script>', page, re.S)[1])
    assert facts["languages"] == LANGUAGES
    assert "<option" not in page  # the picker is built from the facts
    strings = (STATIC / "i18n.js").read_text()
    table = strings.split("const STRINGS = {", 1)[1].split("\n};", 1)[0]
    assert re.findall(r'^  "?([\w-]+)"?: \{', table, re.M) == list(LANGUAGES)
    reasons = strings.split("const REASONS = {", 1)[1].split("\n};", 1)[0]
    assert set(re.findall(r'^  "?([\w-]+)"?: \[', reasons, re.M)) <= set(LANGUAGES)


def test_the_report_has_words_for_each():
    from digitlab.training.report import TEXT

    assert list(TEXT) == list(LANGUAGES)
