"""``digitlab report``: every picture opened and checked, report.html parsed (its images counted, nothing fetched from
a network), both languages complete, and nothing a user has is overwritten unasked.

Scored on the first LIMIT MNIST test images (``limit``) to keep the tests to seconds; the whole test set is the
benchmark's (benchmarks/report_speed.py).
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from digitlab.languages import LANGUAGES
from digitlab.training.report import PICTURES, REPORT_FILES, TEXT, write_report

LIMIT = 1000
SIZES = {"samples.png": (900, 400), "confusion.png": (1000, 450), "per_class.png": (700, 300),
         "mistakes.png": (900, 100), "filters.png": (800, 150), "feature_maps.png": (800, 400),
         "kernels.png": (800, 300)}


class Page(HTMLParser):
    """The parts of report.html the tests look at: its images, its language, every URL it names."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.lang = None
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        if tag == "img":
            self.images.append(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]

    def handle_data(self, data):
        self.text.append(data)


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def bundled_report(tmp_path_factory, mnist_dir):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(None, out, limit=LIMIT, data_dir=mnist_dir)


def test_every_picture_is_a_real_picture(bundled_report, check_picture):
    out, result = bundled_report
    assert sorted(p.rsplit("/", 1)[-1] for p in result["files"]) == sorted(REPORT_FILES)
    for name in PICTURES:
        check_picture(out / name, *SIZES[name])


def test_the_numbers_are_the_models(bundled_report):
    _, result = bundled_report
    assert result["arch"] == "digitnet" and result["count"] == LIMIT
    assert result["accuracy"] > 0.99 and result["errors"] == round((1 - result["accuracy"]) * LIMIT)
    assert sum(map(sum, result["confusion"])) == LIMIT
    json.dumps(result)  # what --json prints


def test_the_page_embeds_every_picture_and_fetches_nothing(bundled_report):
    out, result = bundled_report
    page = parse(out / "report.html")
    assert page.lang == "en"
    assert len(page.images) == len(PICTURES)  # the bundled model has no run folder, so no curves
    assert [image["alt"] for image in page.images] == list(PICTURES)
    assert all(url.startswith("data:image/png;base64,") for url in page.urls)
    assert "http" not in (out / "report.html").read_text().replace("http-equiv", "")
    text = " ".join(page.text)
    assert "conv2d_1 (Conv2d)" in text and "digitnet" in text  # the layer table and the metadata
    assert f"{100 * result['accuracy']:.2f}%" in text
    assert TEXT["en"]["no_curves"] in text


def test_a_run_folder_brings_its_curves_and_chinese_captions(tmp_path, mnist_dir, check_picture):
    from digitlab.training.config import TrainConfig
    from digitlab.training.loop import train

    run = tmp_path / "run"
    train(TrainConfig(model="digitnet_fast", model_kwargs={"widths": (4, 8, 8)}, epochs=2, batch_size=64, limit=400,
                      validation_split=0.25, seed=0, schedule="constant", augment=False, ema_decay=0.0), run,
          quiet=True)
    result = write_report(run, lang="zh", limit=300, data_dir=mnist_dir, mistakes=20)
    out = run / "report"  # the default: inside the run's folder
    assert all(str(out) in path for path in result["files"])
    page = parse(out / "report.html")
    assert page.lang == "zh-CN"
    assert len(page.images) == len(PICTURES) + 1  # and the curves
    text = " ".join(page.text)
    assert TEXT["zh-CN"]["confusion.png"] in text and TEXT["zh-CN"]["title"] in text
    for name in PICTURES:
        check_picture(out / name, 200, 100)


def test_every_language_says_everything():
    assert set(LANGUAGES) == set(TEXT)
    assert set(TEXT["zh-CN"]) == set(TEXT["en"])
    assert set(PICTURES) | {"curves.png"} <= set(TEXT["en"])


def test_an_existing_report_is_kept_unless_asked(bundled_report, mnist_dir):
    out, _ = bundled_report
    before = (out / "report.html").stat().st_mtime_ns
    with pytest.raises(ValueError, match="--overwrite"):
        write_report(None, out, limit=100, data_dir=mnist_dir)
    assert (out / "report.html").stat().st_mtime_ns == before


def test_own_image_for_the_feature_maps(tmp_path, mnist_dir, check_picture):
    from PIL import Image, ImageDraw

    photo = Image.new("L", (200, 240), 235)  # a dark "1" on light paper
    ImageDraw.Draw(photo).line([(100, 30), (100, 210)], fill=20, width=14)
    photo.save(tmp_path / "one.png")
    write_report(None, tmp_path / "out", limit=200, data_dir=mnist_dir, image=tmp_path / "one.png")
    check_picture(tmp_path / "out" / "feature_maps.png", 800, 400)


@pytest.mark.parametrize("kwargs,needle", [
    ({"lang": "fr"}, "lang must be one of"),
    ({"index": 5000, "limit": 100}, "--index 5000"),
    ({"limit": -1}, "--limit"),
])
def test_bad_options_are_one_line_errors(tmp_path, mnist_dir, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        write_report(None, tmp_path / "out", data_dir=mnist_dir, **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="without model.safetensors"):
        write_report(tmp_path, tmp_path / "out")


def test_the_page_opens_offline_in_a_browser(bundled_report):
    """Chromium opens report.html from disk with every request beyond the file refused: each picture decodes and
    shows, and the page's own words are there. Skipped without Debian's chromium, except under CI."""
    import os
    from pathlib import Path

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{chromium} is missing under CI: .ci/run must install Debian's chromium", pytrace=False)
        pytest.skip(f"{chromium} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    out, _ = bundled_report
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                   "--disable-component-update", "--no-first-run"])
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()

            def refuse(route):
                requested.append(route.request.url)
                route.abort()

            page.route("http*://**/*", refuse)
            page.goto((out / "report.html").as_uri())
            shown = page.eval_on_selector_all("img", "images => images.map(i => i.complete && i.naturalWidth > 0)")
            heading = page.inner_text("h1")
            shots = Path(__file__).resolve().parents[2] / "test-output" / "report"
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "report.png"), full_page=True)
        finally:
            browser.close()
    assert shown == [True] * len(PICTURES)
    assert TEXT["en"]["title"] in heading and requested == []
