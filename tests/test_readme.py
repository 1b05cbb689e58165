"""The README is a front door whose claims are checked, and README.zh-CN.md keeps step with it.

Both stay short; every `digitlab ...` command, every shell command in a code block and every --flag of the English
README is in the Chinese one too, and each links to the other at the top. The commands are ones digitlab's parser
takes. The results table is docs/results.md's (whose means are its seeds' means), and the bundled model's figures are
its own metadata's. Every relative link in the README, the CHANGELOG and docs/ leads to a file that exists, and an
anchor to a heading that exists."""

from __future__ import annotations

import re
import shlex
import statistics
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
    assert len(commands(english)) > 10 and len(flags(english)) > 10  # the extraction found the README's commands


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
    """docs/networks.md's table of networks is written by hand: each dropout a registered network really has is in
    its row, with its rate."""
    from torch import nn

    from digitlab.training.models import create_model, list_models

    rows = {}
    for line in (ROOT / "docs" / "networks.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):  # the first table that names a network is the table of networks
            rows.setdefault(line.split("`")[1], line)
    assert set(list_models()) <= set(rows)
    for name in list_models():
        rates = [m.p for m in create_model(name).modules() if isinstance(m, nn.Dropout)]
        shown = rows[name].count("Dropout")
        assert shown == len(rates) and all(f"Dropout {rate:g}" in rows[name] for rate in rates), name


READMES = ("README.md", "README.zh-CN.md")


def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def test_each_readme_is_a_front_door_not_the_reference():
    for readme in READMES:
        assert len(read(readme).splitlines()) < 200, f"{readme}: the reference goes to docs/, the README links to it"


def test_the_readmes_commands_are_ones_digitlab_takes():
    """Each `digitlab ...` the README shows parses: a renamed command or option fails here, not in a reader's shell."""
    from digitlab.cli import build_parser

    parser = build_parser()
    tried = 0
    for command in commands(read("README.md")):
        for part in command.split("&&"):
            words = shlex.split(part)
            if words and Path(words[0]).name == "digitlab":
                parser.parse_args(words[1:])  # a command or option digitlab does not take raises UsageError
                tried += 1
    assert tried > 10


def table(section: str) -> dict[str, list[str]]:
    """The rows of the first table in ``section`` whose first cell is code, by that code, as lists of cells."""
    rows = {}
    for line in section.split("\n|---", 1)[1].split("\n\n", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0].startswith("`"):
            rows[cells[0].split("`")[1]] = cells
    return rows


def section(markdown: str, heading: str) -> str:
    return markdown.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readmes_results_table_is_the_results_pages_and_its_means_are_the_seeds():
    results = table(section(read("docs/results.md"), "### The tutorials, reproduced"))
    for recipe, cells in results.items():  # recipe | reported | seeds | mean ± std | ...
        seeds = [float(seed) for seed in cells[2].removesuffix(" %").split(",")]
        mean, spread = re.fullmatch(r"\*\*([\d.]+) % ± ([\d.]+)\*\*", cells[3]).groups()
        assert (f"{statistics.mean(seeds):.2f}", f"{statistics.stdev(seeds):.2f}") == (mean, spread), recipe
    for readme in READMES:
        rows = table(section(read(readme), "## Results" if readme == "README.md" else "## 结果"))
        assert sorted(rows) == sorted(results), readme
        for recipe, cells in rows.items():  # recipe | network | reported | measured
            assert cells[-1].strip("*") == results[recipe][3].strip("*"), (readme, recipe)
    english = table(section(read("README.md"), "## Results"))
    assert all(english[recipe][2] == results[recipe][1] for recipe in results)  # the tutorials' own figures


def test_the_readmes_own_images_figures_are_the_results_pages():
    own = section(read("docs/results.md"), "## Your own images")
    figures = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in own.splitlines()
               if line.startswith("| ") and "%" in line}
    digitlab = re.match(r"\*\*([\d.]+ %)\*\*", figures["digitlab's preprocessing"]).group(1)
    tutorials = figures["the tutorials' pipeline (invert if needed, resize to 28x28)"]
    for readme in READMES:
        assert f"**{digitlab}**" in read(readme) and tutorials in read(readme), readme


def test_the_readmes_figures_of_the_bundled_model_are_its_own():
    """The test accuracy, the share of MNIST held out and the threshold the README states are the ones the bundled
    model records (read torch-free)."""
    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.facts import default_threshold

    metadata = load_engine(None, "onnx").metadata
    accuracy = f"**{metadata['test']['accuracy']:.2%}**".replace("%", " %")
    held_out = f"{metadata['config']['validation_split']:.0%}".replace("%", " %")
    threshold = f"{default_threshold(metadata):.0%}".replace("%", " %")
    for readme in READMES:
        text = read(readme)
        assert accuracy in text, (readme, accuracy)
        for share in (held_out, threshold):
            assert re.search(rf"(?<![\d.]){share}", text), (readme, share)


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(markdown: str) -> str:
    """The markdown without its fenced blocks and inline code, where brackets and hashes are not links or headings."""
    return SPAN.sub("", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M))


def anchors(markdown: str) -> set[str]:
    """The anchors of a page's headings; a repeated heading's are numbered, as GitHub numbers them."""
    found, seen = set(), {}
    for line in re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M).splitlines():
        if line.startswith("#"):
            anchor = slug(line.lstrip("#"))
            found.add(f"{anchor}-{seen[anchor]}" if anchor in seen else anchor)
            seen[anchor] = seen.get(anchor, 0) + 1
    return found


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # a web address: not checked offline
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(target)
    return broken


def test_every_link_in_the_docs_leads_somewhere():
    pages = [ROOT / "README.md", ROOT / "README.zh-CN.md", ROOT / "CHANGELOG.md",
             ROOT / "src" / "digitlab" / "pretrained" / "DATA.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert {page.name: broken_links(page) for page in pages} == {page.name: [] for page in pages}


def test_the_link_check_sees_a_missing_file_and_heading(tmp_path):
    (tmp_path / "a.md").write_text("# A `page`: one\n\n## Two\n\n```bash\n# not a heading\n```\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#a-page-one) [ok](a.md#two) [no](a.md#not-a-heading) [no](c.md) [web](https://x.y/z)\n"
                    "`[code](c.md)`\n", encoding="utf-8")
    assert broken_links(page) == ["a.md#not-a-heading", "c.md"]
