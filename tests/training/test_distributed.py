"""Training under torchrun: two real CPU processes on the gloo backend, and the batch sharding they rely on."""

import json
import subprocess
import sys

import torch

from digitlab.training import checkpoint
from digitlab.training.data import Split
from digitlab.training.distributed import Distributed, share_batch_norm
from digitlab.training.loop import batches, steps_per_epoch
from digitlab.training.models import create_model

# A guard against a hang, not a speed check: four Python processes importing torch and meeting over gloo on a
# 2-CPU machine that also runs other work have taken longer than two minutes.
LAUNCH_TIMEOUT = 600


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
    done = subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
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


def test_two_nodes_on_one_machine_with_c10d_rendezvous_and_resume(tmp_path, mnist_dir):
    """Two torchrun launchers, as on two machines (here both on localhost): one process each, found by c10d
    rendezvous; rank 0 alone writes, and --resume continues the group's run where it stopped."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "run"

    def launch(epochs: int, *extra: str) -> list[subprocess.Popen]:
        train = ["-m", "digitlab.cli", "train", "--recipe", "conv3_dense64", "--epochs", str(epochs),
                 "--batch-size", "32", "--limit", "1000", "--validation-split", "0.2", "--learning-rate", "3e-3",
                 "--device", "cpu", "--quiet", "--data-dir", str(mnist_dir), "--out", str(out), *extra]
        return [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                                  "--nproc_per_node", "1", "--rdzv-backend", "c10d",
                                  "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"test-{epochs}", *train],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]

    def finish(launchers) -> str:
        results = [launcher.communicate(timeout=LAUNCH_TIMEOUT) for launcher in launchers]
        for launcher, (_, err) in zip(launchers, results):
            assert launcher.returncode == 0, err[-3000:]
        return "".join(stdout for stdout, _ in results)

    assert finish(launch(1)).count("wrote ") == 1  # only rank 0 writes, whichever launcher holds it
    assert [row["epoch"] for row in json.loads((out / "history.json").read_text())] == [1]
    finish(launch(2, "--resume"))
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2] and history[-1]["val_accuracy"] > 0.3
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "resume.safetensors", "history.json",
                                               "history.csv", "curves.png"}


def test_sync_batchnorm_keeps_the_checkpoint_names_and_the_answers():
    plain = create_model("digitnet").eval()
    shared = share_batch_norm(create_model("digitnet")).eval()
    shared.load_state_dict(plain.state_dict())  # the same names and shapes: a checkpoint reads back either way
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in shared.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in shared.modules())
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(shared(images), plain(images))


def test_sync_batchnorm_is_refused_on_a_machine_without_a_gpu(tmp_path, mnist_dir):
    if torch.cuda.is_available():
        return
    done = subprocess.run([sys.executable, "-m", "digitlab.cli", "train", "--sync-batchnorm", "--dry-run",
                           "--data-dir", str(mnist_dir), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 2 and "SyncBatchNorm runs on CUDA devices only" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()
