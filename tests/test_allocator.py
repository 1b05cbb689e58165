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


def page_faults(script: str, mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


GLIBC = sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")

# Blocks below glibc's first mmap threshold come from the heap; freeing them all leaves more free memory at its top
# than the default trim threshold, which glibc hands back to the kernel, so the next round faults every page in again.
ROUNDS = """
import ctypes, resource, sys
from digitlab.allocator import keep_freed_memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def round():
    blocks = [libc.malloc(64 << 10) for _ in range(256)]
    for block in blocks:
        ctypes.memset(block, 1, 64 << 10)
    for block in blocks:
        libc.free(block)
round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_memory_freed_at_the_heaps_top_is_kept_for_the_next_round():
    pages = 10 * 256 * (64 << 10) // os.sysconf("SC_PAGE_SIZE")  # what ten rounds touch
    kept, plain = page_faults(ROUNDS, "keep"), page_faults(ROUNDS, "plain")
    assert kept < pages // 100 and plain > pages // 4, (kept, plain, pages)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in_again():
    # Each step allocates the same few MB of activations. Without the setting, how many pages glibc hands back depends
    # on the order blocks happen to be freed in (its mmap threshold moves as it goes): 0 to 56,000 in 20 steps on the
    # same machine. With it, 20 steps fault in less than four copies of the first convolution's output.
    activation = 128 * 16 * 24 * 24 * 4 // os.sysconf("SC_PAGE_SIZE")
    kept = page_faults(STEPS, "keep")
    assert kept < 4 * activation, (kept, activation, {k: v for k, v in os.environ.items() if "MALLOC" in k or
                                                       k in ("GLIBC_TUNABLES", "LD_PRELOAD", "OMP_NUM_THREADS")})


def test_a_users_own_malloc_setting_is_kept(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
