"""The named recipes, the default one end to end, and recording test metrics into a checkpoint."""

import json
import subprocess
import sys

import pytest
import torch

from digitlab.training import checkpoint
from digitlab.training.data import attach_data_config
from digitlab.training.models import create_model
from digitlab.training.config import DEFAULT_RECIPE, RECIPES, recipe_config


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_config(name):
    cfg = recipe_config(name)
    assert cfg.model == RECIPES[name]["model"]
    assert not cfg.early_stopping or cfg.validation_split > 0  # any selection is on held-out training images


def test_default_recipe_uses_the_modern_toolbox():
    assert DEFAULT_RECIPE == "default"
    cfg = recipe_config("default")
    assert cfg.model == "digitnet" and cfg.augment and cfg.label_smoothing > 0 and cfg.ema_decay > 0
    assert cfg.schedule == "onecycle"
    assert cfg.augment_config.rotate > 0 and cfg.augment_config.shear > 0
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in create_model(cfg.model).modules())


def test_overrides_win_and_none_is_ignored():
    cfg = recipe_config("default", epochs=2, seed=None)
    assert cfg.epochs == 2 and cfg.seed == 0


def test_update_metadata_keeps_the_weights(tmp_path):
    model = attach_data_config(create_model("digitnet"), recipe_config("cnn5x5_dense1000").data_config()).eval()
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, model, {"metrics": {}})
    checkpoint.update_metadata(path, {"test": {"accuracy": 0.5}})
    loaded, meta = checkpoint.load(path)
    assert meta["test"] == {"accuracy": 0.5} and meta["arch"] == "digitnet"
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))


def run(*args):
    return subprocess.run([sys.executable, "-m", "digitlab.cli", *args], capture_output=True, text=True, timeout=300)


def test_default_recipe_dry_run_then_record_test_accuracy(tmp_path, mnist_dir):
    out = tmp_path / "default"
    result = run("train", "--dry-run", "--out", str(out), "--data-dir", str(mnist_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    _, meta = checkpoint.load(out / "model.safetensors")
    assert meta["config"]["model"] == "digitnet"
    assert meta["command"].startswith("digitlab train --dry-run")
    result = run("eval", str(out / "model.safetensors"), "--record", "--json", "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout)
    _, meta = checkpoint.load(out / "model.safetensors")
    assert meta["test"]["accuracy"] == reported["accuracy"] and meta["test"]["count"] == 10_000
    assert meta["test"]["errors"] == len(reported["misclassified"])


def test_record_needs_a_path():
    result = run("eval", "--record")
    assert result.returncode == 2 and "--record needs" in result.stderr


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_resumes(tmp_path, name, mnist_dir, monkeypatch, tiny_realdata):
    """A run of any recipe continues with --resume: its settings read back as written (a tuple comes back a list)."""
    from digitlab.training import loop
    from digitlab.training.loop import train

    monkeypatch.setattr(loop, "NONDIGIT_POOL", 600)  # letters for three batches, not for a whole run
    # a recipe that learns from other writers reads a small folder shaped like the real handwriting's
    writers = RECIPES[name].get("other_writers") or RECIPES[name].get("real_letters")
    real = {"realdata_dir": str(tiny_realdata(tmp_path / "real", per_file=10))} if writers else {}
    cfg = recipe_config(name, limit=2000, device="cpu", data_dir=str(mnist_dir), **real)
    out = tmp_path / "run"
    first = train(cfg, out, dry_run=True, quiet=True)  # three batches of the first epoch, then saved
    resumed = train(cfg, out, resume=True, dry_run=True, quiet=True)
    assert resumed.history[0] == first.history[0]
    assert [row["epoch"] for row in resumed.history] == list(range(1, min(2, cfg.epochs) + 1))
