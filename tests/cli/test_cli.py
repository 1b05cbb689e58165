import json
import subprocess
import sys

import pytest

from digitlab.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "digitlab.cli", *args], capture_output=True, text=True, timeout=120)


def test_the_installed_command_is_main_with_its_exit_code_and_whole_output(capsys):
    from importlib.metadata import entry_points

    import digitlab.cli

    (command,) = entry_points(group="console_scripts", name="digitlab")
    assert command.load() is digitlab.cli.run  # main, then an exit that leaves garbage collection to the system
    assert main(["models"]) == 0
    listed = run("models")  # `python -m digitlab.cli` goes through run() too
    assert listed.returncode == 0 and listed.stdout == capsys.readouterr().out
    assert run("train", "--epochs", "0").returncode == 2


def test_models_lists_every_network_with_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cnn5x5_dense1000" in out and "1,087,106" in out and "65,788" in out


def test_summary_prints_a_layer_table(capsys):
    assert main(["summary", "conv32_dense128"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 2,770,634" in out and "(None, 32, 26, 26)" in out


@pytest.mark.parametrize("args,needle", [
    (["train", "--epochs", "many"], "invalid int value"),
    (["train", "--model", "nope", "--dry-run"], "unknown network 'nope'"),
    (["train", "--recipe", "nope"], "unknown recipe"),
    (["summary", "nope"], "unknown network"),
    (["eval", "missing.safetensors"], "no such checkpoint"),
    (["frobnicate"], "invalid choice"),
    (["train", "--optimizer", "rmsprop"], "invalid choice"),
    (["train", "--sync-batchnorm", "--device", "cpu", "--dry-run"], "SyncBatchNorm runs on CUDA devices only"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle):
    result = run(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_missing_data_is_one_line_exit_2(tmp_path):
    result = run("train", "--dry-run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "train-images-idx3-ubyte.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_dry_run_then_eval_json(tmp_path, mnist_dir):
    out = tmp_path / "dry"
    result = run("train", "--model", "conv3_dense64", "--dry-run", "--out", str(out), "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").exists() and (out / "history.json").exists()
    result = run("eval", str(out / "model.safetensors"), "--json", "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 10000 and len(report["confusion"]) == 10 and report["arch"] == "conv3_dense64"
    table = run("eval", str(out / "model.safetensors"), "--data-dir", str(mnist_dir))
    assert "precision" in table.stdout and "confusion" in table.stdout


def test_model_alone_takes_its_tutorial_recipe(tmp_path, mnist_dir):
    out = tmp_path / "m"
    result = run("train", "--model", "mlp_3x256", "--dry-run", "--out", str(out), "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    assert "recipe mlp_3x256" in result.stderr
    from digitlab.training import checkpoint

    _, meta = checkpoint.load(out / "model.safetensors")
    assert meta["config"]["optimizer"] == "sgd" and meta["config"]["batch_size"] == 1024


def test_summary_of_a_checkpoint_names_layers_as_keras_does(capsys):
    from digitlab.training.checkpoint import BUNDLED

    assert main(["summary", str(BUNDLED)]) == 0
    out = capsys.readouterr().out
    assert "classes=11" in out and "(None, 11)" in out  # the network as the file built it, 11th output and all
    assert "conv2d_1 (Conv2d)" in out and "conv2d_4 (Conv2d)" in out and "re_lu_4 (ReLU)" in out
    assert "0 (Conv2d)" not in out
