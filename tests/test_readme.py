"""README.zh-CN.md keeps step with README.md: every `digitlab ...` command, every shell command in a code block and
every --flag of the English README is in the Chinese one too, and each links to the other at the top."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
SPAN = re.compile(r"`([^`\n]+)`")
COMMAND_START = ("digitlab ", ".venv/bin/", "python ", "python3 ", "torchrun ")


def commands(markdown: str) -> set[str]:
    """The commands a reader would type: inline code that starts like one, and each code block's lines without their
    comments (the comments are prose, and are translated)."""
    found = {span.strip() for span in SPAN.findall(markdown) if span.startswith(COMMAND_START)}
    for block in re.findall(r"```(?:bash|sh|python)?\n(.*?)```", markdown, re.S):
        for line in block.splitlines():
            code = line.split("  #", 1)[0].strip()
            if code.startswith(COMMAND_START):
                found.add(code)
    return found


def flags(markdown: str) -> set[str]:
    return set(FLAG.findall(markdown))


def missing(english: str, chinese: str) -> list[str]:
    return sorted((commands(english) - commands(chinese)) | (flags(english) - flags(chinese)))


def test_the_chinese_readme_has_every_command_and_flag():
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert missing(english, chinese) == [], "in README.md but not in README.zh-CN.md"
    assert len(commands(english)) > 20 and len(flags(english)) > 40  # the extraction found the README's commands


def test_each_readme_links_to_the_other_at_the_top():
    english = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:5]
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8").splitlines()[:5]
    assert any("(README.zh-CN.md)" in line for line in english)
    assert any("(README.md)" in line for line in chinese)
    assert sum(ch >= "\u4e00" for ch in "".join(chinese)) > 5  # and the Chinese one is in Chinese


def test_the_check_sees_a_missing_command_and_flag():
    english = "Run `digitlab report --lang zh` then\n```bash\n.venv/bin/digitlab serve --api-key K  # a key\n```\n"
    chinese = "运行 `digitlab report --lang zh`，然后\n```bash\n.venv/bin/digitlab serve  # 密钥\n```\n"
    assert missing(english, chinese) == ["--api-key", ".venv/bin/digitlab serve --api-key K"]


def test_the_network_table_shows_each_dropout_the_code_has():
    """The README's table of networks is written by hand: each dropout a registered network really has is in its row,
    with its rate, in both languages."""
    from torch import nn

    from digitlab.training.models import create_model, list_models

    for readme in ("README.md", "README.zh-CN.md"):
        rows = {}
        for line in (ROOT / readme).read_text(encoding="utf-8").splitlines():
            if line.startswith("| `"):  # the first table that names a network is the table of networks
                rows.setdefault(line.split("`")[1], line)
        for name in list_models():
            if name not in rows:
                continue
            rates = [m.p for m in create_model(name).modules() if isinstance(m, nn.Dropout)]
            shown = rows[name].count("Dropout")
            assert shown == len(rates) and all(f"Dropout {rate:g}" in rows[name] for rate in rates), (readme, name)
