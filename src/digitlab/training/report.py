"""What a network learned, as pictures and one HTML page: ``digitlab report``.

A checkpoint (the bundled model by default, or a run's folder) is scored on the MNIST test set, and the pictures of
``figures.py`` are written beside ``report.html``, a self-contained page (every picture embedded, nothing fetched)
with the model's metadata, its Keras-style layer table, the run's curves when its folder has a history, and the
accuracy with a per-class table. The page speaks English or Chinese; the pictures stay English (docs/learning.md
says why).

    result = write_report("runs/default", "runs/default/report", lang="zh-CN")
    result["files"], result["accuracy"]
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.labels import temperature_of
from digitlab.scores import report
from digitlab.training import checkpoint
from digitlab.training.data import load_mnist
from digitlab.training.evaluate import infer
from digitlab.training.figures import (confusion_figure, curves_figure, feature_maps_figure, filters_figure,
                                       first_layer, kernels_figure, mistakes_figure, per_class_figure, png_bytes,
                                       samples_figure, caption_of_test_digit)
from digitlab.training.summary import layer_rows
from digitlab.files import atomic_write, atomic_write_text
from digitlab.languages import language

# Every file a report may write, in the order the page shows them; a folder holding any of them is not written into
# without ``overwrite``.
PICTURES = ("samples.png", "confusion.png", "per_class.png", "mistakes.png", "filters.png", "feature_maps.png",
            "kernels.png")
REPORT_FILES = PICTURES + ("report.html",)

# The page's words, in each of digitlab.languages. Keys are the pictures' file names and the page's own labels; every
# language has every key (tests/training/test_report.py checks).
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "What the network learned",
        "model": "The model", "layers": "Layers", "curves": "Training curves", "scores": "On the test set",
        "pictures": "Pictures",
        "network": "network", "parameters": "parameters", "classes": "classes", "command": "command",
        "config": "training settings", "epoch": "epochs trained", "training_time": "training time",
        "temperature": "confidence temperature", "recorded": "metrics recorded at training",
        "data_md5": "MNIST files (MD5)", "versions": "versions", "weights": "weights (SHA-256)",
        "checkpoint": "checkpoint", "bundled": "the bundled model", "unknown": "not recorded",
        "accuracy": "accuracy", "errors": "errors", "images": "test images", "loss": "loss", "refused":
        "digits called 'not a digit'",
        "digit": "digit", "precision": "precision", "recall": "recall", "count": "count",
        "layer": "Layer (type)", "shape": "Output shape", "param": "Param #", "total": "Total params",
        "no_curves": "This checkpoint's folder has no history.json, so there are no training curves.",
        "curves.png": "Loss and accuracy per epoch (training, and validation when the run held a split out) and the "
                      "learning rate.",
        "samples.png": "The first test digits and the model's answer with its confidence: green right, red wrong.",
        "confusion.png": "The confusion matrix: rows are the true digits, columns the answers; left the counts, right "
                         "each row as percentages, so you see where each digit's errors go.",
        "per_class.png": "Precision (of the answers 'd', how many were d) and recall (of the d's, how many were "
                         "found) for each digit.",
        "mistakes.png": "The misread test digits, most confident first: true digit -> answer, confidence. Many are "
                        "hard for people too.",
        "filters.png": "The first layer's kernels: what each unit looks for in the pixels (red positive weights, "
                       "blue negative).",
        "feature_maps.png": "One digit through the network: the most active maps of each convolution stage. Edges "
                            "early, strokes and parts later, at lower resolution.",
        "kernels.png": "What a convolution does: three hand-set kernels (horizontal edge, vertical edge, blur) and "
                       "three learned ones, each applied to the same digit.",
    },
    "zh-CN": {
        "title": "网络学到了什么",
        "model": "模型", "layers": "网络层", "curves": "训练曲线", "scores": "测试集上的表现", "pictures": "图片",
        "network": "网络", "parameters": "参数量", "classes": "类别", "command": "训练命令",
        "config": "训练设置", "epoch": "训练轮数", "training_time": "训练时间",
        "temperature": "置信度温度", "recorded": "训练时记录的指标",
        "data_md5": "MNIST 文件（MD5）", "versions": "版本", "weights": "权重（SHA-256）",
        "checkpoint": "检查点", "bundled": "自带的模型", "unknown": "未记录",
        "accuracy": "准确率", "errors": "错误数", "images": "测试图片", "loss": "损失", "refused":
        "被判为“不是数字”的数字",
        "digit": "数字", "precision": "精确率", "recall": "召回率", "count": "数量",
        "layer": "层（类型）", "shape": "输出形状", "param": "参数个数", "total": "参数总数",
        "no_curves": "这个检查点所在的文件夹里没有 history.json，所以没有训练曲线。",
        "curves.png": "每一轮的损失和准确率（训练集；留出了验证集时也画验证集）以及学习率。",
        "samples.png": "前几张测试图片和模型的回答及置信度：绿色为对，红色为错。",
        "confusion.png": "混淆矩阵：行是真实数字，列是模型的回答；左图为个数，右图为每行的百分比，"
                         "可以看出每个数字的错误去了哪里。",
        "per_class.png": "每个数字的精确率（回答为 d 的图片中真的是 d 的比例）和召回率（所有 d 中被认出的比例）。",
        "mistakes.png": "认错的测试图片，按置信度从高到低：真实数字 -> 回答，置信度。其中不少人也很难认。",
        "filters.png": "第一层的卷积核：每个单元在像素中寻找什么（红色为正权重，蓝色为负权重）。",
        "feature_maps.png": "一个数字经过网络：每个卷积阶段中最活跃的特征图。前面是边缘，后面分辨率更低，"
                            "是笔画和部件。",
        "kernels.png": "卷积做了什么：三个手工设定的卷积核（水平边缘、垂直边缘、模糊）和三个学到的卷积核，"
                       "分别作用在同一个数字上。",
    },
}


def find_source(path: str | os.PathLike | None) -> tuple[Path | None, list[dict] | None, Path]:
    """(checkpoint file or None for the bundled model, the run's history or None, the default output folder).

    A folder is a run: its ``model.safetensors``, its ``history.json`` when there is one, and ``report/`` inside it.
    A checkpoint file's history is looked for beside it.
    """
    if path is None:
        return None, None, Path("report")
    path = Path(path)
    if path.is_dir():
        model_path = path / "model.safetensors"
        if not model_path.is_file():
            raise ValueError(f"{path}: a folder without model.safetensors; give a run's folder or a checkpoint file")
    else:
        model_path = path
    history_path = model_path.parent / "history.json"
    history = None
    if history_path.is_file():
        try:
            history = json.loads(history_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{history_path}: not valid JSON ({exc})") from None
        if not isinstance(history, list) or not all(isinstance(row, dict) and "epoch" in row for row in history):
            raise ValueError(f"{history_path}: not a training history (a list of epochs)")
    return model_path, history or None, model_path.parent / "report"


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace a report a user already has, unless asked."""
    existing = [name for name in REPORT_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise ValueError(f"{out_dir} already holds a report ({', '.join(existing[:3])}"
                         f"{', ...' if len(existing) > 3 else ''}): replace it with --overwrite, or choose another "
                         f"--out")


def own_digit(image_path: str | os.PathLike) -> np.ndarray:
    """A person's image brought to MNIST form by the one preprocessing module, as uint8 (28, 28)."""
    from digitlab.recognition.preprocess import prepare

    prepared = prepare(image_path)
    if not prepared.glyphs:
        raise ValueError(f"{image_path}: no digit found ({prepared.reason})")
    return np.clip(np.rint(prepared.glyphs[0].image * 255), 0, 255).astype(np.uint8)


def probabilities_of(logits: torch.Tensor, meta: dict[str, Any]) -> np.ndarray:
    """Softmax of the logits, divided first by the model's fitted temperature when it has one: confidences as the
    recogniser reports them."""
    return torch.softmax(logits.double() / temperature_of(meta), dim=1).numpy()


def write_report(path: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None, *,
                 lang: str = "en", overwrite: bool = False, data_dir: str | os.PathLike | None = None,
                 limit: int = 0, index: int = 0, image: str | os.PathLike | None = None,
                 mistakes: int = 100) -> dict[str, Any]:
    """Score the checkpoint (or run folder) ``path`` on the MNIST test set and write the pictures and report.html.

    ``limit`` scores the first N test images only (0: all); the feature maps and the kernel lesson use test image
    ``index``, or the person's ``image`` when given; ``mistakes`` caps the misread digits shown. Returns the
    numbers and the files written.
    """
    lang = language(lang)
    if limit < 0 or mistakes < 1:
        raise ValueError("--limit must be 0 or more and --mistakes at least 1")
    model_path, history, default_out = find_source(path)
    out_dir = Path(out_dir) if out_dir is not None else default_out
    check_out_dir(out_dir, overwrite)
    model, meta = checkpoint.load(model_path)
    images, labels = load_mnist("test", data_dir)
    if limit:
        images, labels = images[:limit], labels[:limit]
    if image is not None:
        digit, digit_caption = own_digit(image), f"{Path(image).name} in MNIST form"
    else:
        if not 0 <= index < len(images):
            raise ValueError(f"--index {index}: there are {len(images)} test images (0 to {len(images) - 1})")
        digit, digit_caption = images[index].numpy(), caption_of_test_digit(index, labels[index])

    logits = infer(model, images)
    result = report(logits, labels)
    probabilities = probabilities_of(logits, meta)
    pixels, truth = images.numpy(), labels.numpy()
    classes = list(meta["classes"])
    figures = {
        "samples.png": lambda: samples_figure(pixels, truth, probabilities, classes),
        "confusion.png": lambda: confusion_figure(result["confusion"], classes),
        "per_class.png": lambda: per_class_figure(result["precision"], result["recall"]),
        "mistakes.png": lambda: mistakes_figure(pixels, truth, probabilities, classes, mistakes),
        "kernels.png": lambda: kernels_figure(model, digit),
    }
    if first_layer(model) is not None:
        figures["filters.png"] = lambda: filters_figure(model)
    if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        figures["feature_maps.png"] = lambda: feature_maps_figure(model, digit, digit_caption)
    pictures = {name: png_bytes(figures[name]()) for name in PICTURES if name in figures}
    curves = png_bytes(curves_figure(history)) if history else None

    written = []
    for name, data in pictures.items():
        atomic_write(out_dir / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
        written.append(str(out_dir / name))
    page = render_html(meta, model, result, pictures, curves, history, lang, model_path)
    atomic_write_text(out_dir / "report.html", page)
    written.append(str(out_dir / "report.html"))
    return {"checkpoint": str(model_path or checkpoint.BUNDLED), "arch": meta["arch"], "count": result["count"],
            "accuracy": result["accuracy"], "loss": result["loss"], "errors": len(result["misclassified"]),
            "refused": result["refused"], "precision": result["precision"], "recall": result["recall"],
            "confusion": result["confusion"], "files": written}


# --- the page --------------------------------------------------------------------------------------------------------

def render_html(meta: dict[str, Any], model: torch.nn.Module, result: dict[str, Any], pictures: dict[str, bytes],
                curves: bytes | None, history: list[dict] | None, lang: str, model_path: Path | None) -> str:
    """The report as one HTML document: every picture embedded as base64, no script, no style or font fetched."""
    t = TEXT[lang]
    parameters = sum(p.numel() for p in model.parameters())
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t['title']}: {html.escape(meta['arch'])}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{t['title']}: <code>{html.escape(meta['arch'])}</code></h1>
<h2>{t['model']}</h2>
{_table(_model_rows(meta, parameters, history, model_path, t))}
<h2>{t['layers']}</h2>
{_layer_table(model, parameters, t)}
<h2>{t['curves']}</h2>
{_figure("curves.png", curves, t) if curves else f"<p>{t['no_curves']}</p>"}
<h2>{t['scores']}</h2>
{_scores(result, t)}
<h2>{t['pictures']}</h2>
{"".join(_figure(name, data, t) for name, data in pictures.items())}
</body>
</html>
"""


# System fonts (with the usual Chinese ones, for the Chinese page): the page fetches nothing.
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei",
       "Noto Sans CJK SC", "Source Han Sans SC", sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.meta td { font-family: ui-monospace, monospace; word-break: break-all; }
figure { margin: 1.5em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; margin-top: 0.3em; }
"""


def _model_rows(meta: dict[str, Any], parameters: int, history: list[dict] | None, model_path: Path | None,
                t: dict[str, str]) -> list[tuple[str, str]]:
    """The model's metadata as (label, value) rows: where it came from, how it was trained, what it recorded."""
    seconds = sum(row.get("seconds", 0.0) for row in history) if history else None
    return [
        (t["checkpoint"], str(model_path) if model_path else t["bundled"]),
        (t["network"], f"{meta['arch']} {_json(meta.get('arch_kwargs') or {})}"),
        (t["parameters"], f"{parameters:,}"),
        (t["classes"], ", ".join(meta["classes"])),
        (t["command"], meta.get("command") or t["unknown"]),
        (t["epoch"], str(meta.get("epoch", t["unknown"]))),
        (t["training_time"], f"{seconds:.0f} s" if seconds else t["unknown"]),
        (t["config"], _json(meta.get("config") or {})),
        (t["temperature"], str((meta.get("calibration") or {}).get("temperature", t["unknown"]))),
        (t["recorded"], _json(meta.get("metrics") or {})),
        (t["data_md5"], _json(meta.get("data_md5") or {})),
        (t["versions"], _json(meta.get("versions") or {})),
        (t["weights"], meta.get("weights_sha256") or t["unknown"]),
    ]


def _layer_table(model: torch.nn.Module, parameters: int, t: dict[str, str]) -> str:
    """The Keras-style table: each layer's name and type, output shape and parameter count, then the total."""
    layers = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str((None, *shape)))}</td>"
                     f"<td class=n>{params:,}</td></tr>" for name, shape, params in layer_rows(model))
    return (f"<table><tr><th>{t['layer']}</th><th>{t['shape']}</th><th>{t['param']}</th></tr>{layers}"
            f"<tr><th colspan=2>{t['total']}</th><th class=n>{parameters:,}</th></tr></table>")


def _scores(result: dict[str, Any], t: dict[str, str]) -> str:
    """The test-set figures as a table, then each digit's precision, recall and count."""
    totals = [sum(row) for row in result["confusion"]]
    per_class = "".join(f"<tr><td>{d}</td><td class=n>{100 * result['precision'][d]:.2f}%</td>"
                        f"<td class=n>{100 * result['recall'][d]:.2f}%</td><td class=n>{totals[d]:,}</td></tr>"
                        for d in range(10))
    scores = _table([(t["images"], f"{result['count']:,}"), (t["accuracy"], f"{100 * result['accuracy']:.2f}%"),
                     (t["errors"], f"{len(result['misclassified']):,}"), (t["loss"], f"{result['loss']:.4f}")]
                    + ([(t["refused"], str(result["refused"]))] if result["refused"] else []))
    return scores + (f"<table><tr><th>{t['digit']}</th><th>{t['precision']}</th><th>{t['recall']}</th>"
                     f"<th>{t['count']}</th></tr>{per_class}</table>")


def _figure(name: str, data: bytes, t: dict[str, str]) -> str:
    """A picture with its file name and the page's caption for it."""
    return (f"<figure>{_image(data, name)}<figcaption><code>{name}</code>: {html.escape(t[name])}"
            f"</figcaption></figure>")


def _image(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}">'


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class=meta>{body}</table>"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
