"""The command line is derived from its sources: TrainConfig's fields, the registries, the engine's backends; every
option explains itself and shows its default; `python -m digitlab` and `digitlab recipes` work."""

import argparse
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from digitlab.cli import build_parser, main
from digitlab.cli.catalogue import RESULTS
from digitlab.cli.train import RECIPE_ONLY, field_help
from digitlab.recognition import backends, engine
from digitlab.recognition.facts import POLARITIES
from digitlab.training.config import OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig, recipe_config


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: p.fill() for name, p in sub.choices.items()}


def options(parser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def test_every_train_config_field_is_an_option_with_help():
    train = options(subcommands()["train"])
    for field in fields(TrainConfig):
        if field.name in RECIPE_ONLY:
            continue
        assert field.name in train, f"TrainConfig.{field.name} has no option in `digitlab train`"
        assert field_help(field), f"TrainConfig.{field.name} has no help (cli/train.py FIELD_HELP or its metadata)"
        assert "default: the recipe's" in train[field.name].help
    assert set(RECIPE_ONLY) <= {f.name for f in fields(TrainConfig)}


def test_choices_come_from_their_registries():
    parsers = subcommands()
    assert tuple(options(parsers["train"])["optimizer"].choices) == OPTIMIZERS
    assert tuple(options(parsers["train"])["schedule"].choices) == SCHEDULES
    assert tuple(options(parsers["predict"])["backend"].choices) == backends.BACKENDS == tuple(engine.ENGINES)
    assert tuple(options(parsers["predict"])["polarity"].choices) == POLARITIES


def test_every_option_has_help_showing_its_default():
    for name, parser in subcommands().items():
        for dest, action in options(parser).items():
            assert action.help, f"digitlab {name} {action.option_strings[0]} has no help"
            flag = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
            if not flag and not action.required:
                assert "default" in action.help, f"digitlab {name} {action.option_strings[0]}: no default shown"


def test_overrides_reach_the_recorded_config(tmp_path, mnist_dir):
    out = tmp_path / "run"
    code = main(["train", "--recipe", "mlp_3x256", "--dry-run", "--quiet", "--out", str(out), "--momentum", "0.5",
                 "--no-channels-last", "--step-gamma", "0.3", "--bf16", "--data-dir", str(mnist_dir)])
    assert code == 0
    from digitlab.training import checkpoint

    _, meta = checkpoint.load(out / "model.safetensors")
    config = meta["config"]
    assert (config["momentum"], config["channels_last"], config["step_gamma"], config["bf16"]) == (0.5, False, 0.3,
                                                                                                  True)
    assert config["optimizer"] == "sgd" and config["batch_size"] == 1024  # the rest is the recipe's


def test_recipes_lists_each_with_its_settings_and_points_to_the_measured_results(capsys):
    """Only what a recipe sets is printed, true by construction; what it was measured to reach is in the docs,
    beside the command and the machine that measured it."""
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and
            line.split()[0] in RECIPES}
    assert list(rows) == list(RECIPES)
    for name, row in rows.items():
        cfg = recipe_config(name)
        assert row[1:] == [cfg.model, str(cfg.epochs), str(cfg.batch_size), cfg.optimizer, f"{cfg.learning_rate:g}",
                           cfg.schedule, f"{cfg.validation_split:g}"]
    assert out.rstrip().endswith(RESULTS) and "docs/results.md" in RESULTS
    assert "%" not in out and " s " not in out  # no measured accuracy or time


def test_the_sections_recipes_points_to_are_headings_of_those_docs():
    root = Path(__file__).resolve().parents[2]
    pointers = re.findall(r"(docs/[\w.]+\.md)\s*\(([^)]*)\)", RESULTS)
    assert {doc for doc, _ in pointers} == {"docs/results.md", "docs/networks.md"}
    for doc, sections in pointers:
        headings = {line.lstrip("#").strip() for line in (root / doc).read_text().splitlines() if line.startswith("#")}
        for name in re.findall(r"'([^']+)'", sections):
            assert name in headings, f"{doc} has no section {name!r}"


def test_python_dash_m_digitlab():
    result = subprocess.run([sys.executable, "-m", "digitlab", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("digitlab ")


@pytest.mark.parametrize("path,asked,installed,expected", [
    ("m.onnx", None, True, "onnx"),
    ("m.safetensors", None, True, "torch"),
    ("m.safetensors", None, False, "torch"),  # a checkpoint needs torch: the error then names the extra
    (None, None, True, "onnx"),  # the bundled model's own export ships beside it
    (None, None, False, "onnx"),
    (None, "torch", True, "torch"),
    ("m.onnx", "torch", True, "torch"),
])
def test_backend_for_a_file(monkeypatch, path, asked, installed, expected):
    monkeypatch.setattr(backends, "torch_installed", lambda: installed)
    assert backends.backend_for(path, asked) == expected


def test_predict_picks_onnx_for_an_onnx_file(test_split, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "seven.png"
    Image.fromarray(test_split[0][0].numpy()).save(image)
    assert main(["predict", "--json", "--model", str(engine.BUNDLED_ONNX), str(image)]) == 0
    assert '"digit": 7' in capsys.readouterr().out
