"""allocator: a training step reuses the memory the one before it freed instead of faulting it in from the kernel."""

import os
import subprocess
import sys

import pytest

from digitlab.allocator import USER_SETTINGS, keep_freed_memory

STEPS = """
import resource, sys
import torch
from torch import nn
from digitlab.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 16, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(800, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not (os.confstr("CS_GNU_LIBC_VERSION") or "")
                    .startswith("glibc"), reason="glibc's malloc only")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in_again():
    # each step allocates the same few MB of activations; handed back to the kernel, they fault in anew every step
    kept, plain = page_faults("keep"), page_faults("plain")
    assert kept * 10 < plain, (kept, plain)


def test_a_users_own_malloc_setting_is_kept(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
