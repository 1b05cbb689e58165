"""Training under torchrun: two real CPU processes on the gloo backend, and the batch sharding they rely on."""

import json
import subprocess
import sys

import torch

from digitlab.training import checkpoint
from digitlab.training.data import Split
from digitlab.training.loop import Distributed, batches, steps_per_epoch


def test_processes_share_an_epoch_without_overlap():
    split = Split(torch.arange(1000).view(1000, 1, 1).expand(1000, 28, 28).to(torch.uint8), torch.arange(1000))
    seen = []
    for rank in range(3):
        world = Distributed(rank=rank, world_size=3)
        labels = [y for _, y in batches(split, 64, torch.Generator().manual_seed(5), world)]
        assert len(labels) == steps_per_epoch(1000, 64, world) == 5  # 16 batches: 5 each, one left over
        seen.append(torch.cat(labels))
    everything = torch.cat(seen)
    assert len(everything.unique()) == len(everything) == 15 * 64


def test_single_process_sees_every_image_once():
    split = Split(torch.zeros(1000, 28, 28, dtype=torch.uint8), torch.arange(1000))
    labels = torch.cat([y for _, y in batches(split, 64, torch.Generator().manual_seed(5))])
    assert sorted(labels.tolist()) == list(range(1000))


def test_torchrun_two_processes_on_gloo(tmp_path, mnist_dir):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "digitlab.cli", "train", "--recipe", "conv3_dense64", "--epochs", "2", "--batch-size", "32",
               "--limit", "2000", "--validation-split", "0.2", "--learning-rate", "3e-3", "--device", "cpu", "--quiet",
               "--data-dir", str(mnist_dir), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # only rank 0 speaks
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.5  # chance is 0.1
    model, meta = checkpoint.load(out / "model.safetensors")
    assert meta["command"].startswith("digitlab train --recipe conv3_dense64")
    assert meta["metrics"]["val_accuracy"] == history[-1]["val_accuracy"]
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "resume.safetensors", "history.json",
                                               "history.csv", "curves.png"}
