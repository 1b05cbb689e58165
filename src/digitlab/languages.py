"""The languages digitlab speaks to people, by BCP 47 code (as README.zh-CN.md is named): the page and `digitlab
report` both read this list. Each keeps its own words for every code here (serve/static/i18n.js, training/report.py),
and tests/test_languages.py checks both have them all. Torch-free.
"""

from __future__ import annotations

LANGUAGES = {"en": "English", "zh-CN": "简体中文"}  # code -> the language's name in itself, as a picker shows it
ALIASES = {"zh": "zh-CN"}  # `digitlab report --lang zh`, as the report first named Chinese


def language(code: str) -> str:
    """The code ``code`` stands for (itself, or what its alias means), or a ValueError naming the codes there are."""
    found = ALIASES.get(code, code)
    if found not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}, not {code!r}")
    return found
