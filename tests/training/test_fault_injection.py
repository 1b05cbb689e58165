"""Kill a real training process with SIGKILL, again and again, and resume it: it ends where an unbroken run ends.

Half of the kills come at random moments, the other half the instant a checkpoint write has begun (a hidden
``.*.tmp`` file is in the run folder), which is where a careless writer leaves half a file. Every time, ``--resume``
(or, when the kill came before the first epoch was saved, a fresh start) must carry on, and the final weights and
history must equal those of a run that was never interrupted. One thread on both sides, so the sums are the same.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from digitlab.training import checkpoint
from digitlab.training.config import recipe_config
from digitlab.training.loop import train

SETTINGS = dict(epochs=5, limit=1200, batch_size=64, validation_split=0.1, threads=1, seed=4)
KILLS = 4


def options(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--" + key.replace("_", "-"), str(value))]


def stateless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def kill_when(proc: subprocess.Popen, out, moment: str, rng: random.Random) -> None:
    """SIGKILL ``proc`` at a random moment of its run, or the instant its n-th file write has begun."""
    proc.stderr.readline()  # its first line: PyTorch is imported and the run begins
    if moment == "random":
        deadline = time.monotonic() + rng.uniform(0.0, 2.5)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        wanted, seen = rng.randint(1, 6), set(out.glob(".*.tmp"))  # leftovers of an earlier kill do not count
        started = set()
        while proc.poll() is None and len(started) < wanted:
            started |= set(out.glob(".*.tmp")) - seen
            time.sleep(0.0005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_sigkill_at_any_moment_then_resume_ends_as_an_unbroken_run(tmp_path, mnist_dir):
    threads = torch.get_num_threads()
    try:
        whole = train(recipe_config("conv3_dense64", **SETTINGS, data_dir=str(mnist_dir)), tmp_path / "whole",
                      quiet=True)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "digitlab.cli", "train", "--model", "conv3_dense64", *options(SETTINGS),
               "--data-dir", str(mnist_dir), "--out", str(out), "--quiet"]
    rng = random.Random(18)
    finished, resumes = False, 0
    for kill in range(KILLS + 1):
        again = ["--resume"] if (out / "resume.safetensors").exists() else ["--overwrite"]
        resumes += again == ["--resume"]
        proc = subprocess.Popen(command + again, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kill == KILLS:  # the last one runs to the end
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            finished = True
            break
        kill_when(proc, out, "write" if kill % 2 else "random", rng)
        if proc.returncode == 0:  # it finished before the kill came
            finished = True
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert finished and resumes >= 2  # the kills came mid-run, not all before the first epoch was saved

    history = json.loads((out / "history.json").read_text())
    assert stateless(history) == stateless(whole.history)
    model, meta = checkpoint.load(out / "model.safetensors")
    assert meta["epoch"] == SETTINGS["epochs"]
    for name, value in whole.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert not list(out.glob(".*.tmp"))
