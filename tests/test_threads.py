"""threads: waiting OpenMP threads sleep in every process digitlab starts, and no more threads than CPUs allowed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digitlab.threads import SPIN_COUNT, SPIN_ROUNDS, WAIT_POLICY, available_cpus, yield_when_waiting


def test_the_wait_policy_and_a_short_spin_are_set_unless_the_user_set_them():
    environment = {}
    yield_when_waiting(environment)
    assert environment == {WAIT_POLICY: "PASSIVE", SPIN_COUNT: str(SPIN_ROUNDS)}
    environment = {WAIT_POLICY: "ACTIVE"}
    yield_when_waiting(environment)
    assert environment == {WAIT_POLICY: "ACTIVE"}  # libgomp's own spin goes with the user's policy
    environment = {SPIN_COUNT: "0"}
    yield_when_waiting(environment)
    assert environment == {WAIT_POLICY: "PASSIVE", SPIN_COUNT: "0"}


def run_python(code: str, **environment) -> str:
    env = {k: v for k, v in os.environ.items() if k not in (WAIT_POLICY, SPIN_COUNT)} | environment
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_command_line_sets_it_before_torch_is_imported():
    code = ("import sys; from digitlab.cli import main; main(['models']); "
            "import os; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), "
            "'torch' in sys.modules)")
    assert run_python(code).splitlines()[-1] == f"PASSIVE {SPIN_ROUNDS} True"
    assert run_python(code, OMP_WAIT_POLICY="ACTIVE").splitlines()[-1] == "ACTIVE None True"


def test_a_serve_worker_process_starts_with_it(served_onnx, monkeypatch):
    import asyncio

    from digitlab.serve.settings import ServeSettings
    from digitlab.serve.workers import WorkerPool, _stop

    async def environment_of_a_worker() -> dict:
        worker = await WorkerPool(ServeSettings(served_onnx, backend="onnx", processes=True))._start_one()
        try:
            raw = Path(f"/proc/{worker.process.pid}/environ").read_bytes()
        finally:
            await _stop(worker)
        return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)

    os.environ.pop(WAIT_POLICY, None)
    monkeypatch.delenv(SPIN_COUNT, raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    environment = asyncio.run(environment_of_a_worker())
    assert environment[WAIT_POLICY] == "PASSIVE" and environment[SPIN_COUNT] == str(SPIN_ROUNDS)
    assert environment["OPENBLAS_NUM_THREADS"] == "1"  # numpy's BLAS threads would only spin beside the others


def test_the_cpus_are_those_this_process_may_run_on():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = ("import os; os.sched_setaffinity(0, {0}); "
            "from digitlab.threads import available_cpus; print(available_cpus())")
    assert run_python(code) == "1"
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def test_a_training_process_uses_no_more_threads_than_it_may(tmp_path, mnist_dir):
    code = ("import os, json; os.sched_setaffinity(0, {0}); import torch; torch.set_num_threads(2); "
            "from digitlab.training.config import TrainConfig; from digitlab.training.loop import train; "
            f"train(TrainConfig(model='mlp_3x256', epochs=1, limit=256, data_dir={str(mnist_dir)!r}), "
            f"{str(tmp_path / 'run')!r}, dry_run=True, quiet=True); print(json.dumps(torch.get_num_threads()))")
    assert json.loads(run_python(code)) == 1
