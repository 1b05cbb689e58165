"""The worker's side of the server without the server: serve.runner and a worker process spoken to over its pipes.

A worker process must need nothing of the web stack (it imports serve.runner, never serve.app), and a model it
cannot load must end it with one line and exit code 2, never a traceback.
"""

import io
import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

from digitlab.serve.settings import ServeSettings

BLOCK_WEB = textwrap.dedent("""
    import sys

    class NoWeb:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("fastapi", "starlette", "anyio", "uvicorn"):
                raise ImportError(f"the web stack is blocked in this test (imported: {name})")

    sys.meta_path.insert(0, NoWeb())
""")


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def message(head: dict | str, payload: list[bytes] = ()) -> bytes:
    """One message to a worker, framed as WorkerPool frames it."""
    data = (head if isinstance(head, str) else json.dumps(head)).encode()
    return struct.pack(">II", len(data), len(data) + sum(map(len, payload))) + data + b"".join(payload)


def replies(stdout: bytes) -> list[dict]:
    found = []
    while stdout:
        (size,) = struct.unpack(">I", stdout[:4])
        found.append(json.loads(stdout[4:4 + size]))
        stdout = stdout[4 + size:]
    return found


def run_worker(settings: ServeSettings, requests: list[bytes], block_web: bool = False) -> subprocess.CompletedProcess:
    code = (BLOCK_WEB if block_web else "") + textwrap.dedent("""
        from digitlab.serve.workers import main
        main()
        assert not {"fastapi", "starlette", "anyio"} & set(sys.modules), "the worker imported the web stack"
    """)
    return subprocess.run([sys.executable, "-c", code], input=message(settings.to_json()) + b"".join(requests),
                          capture_output=True, timeout=120, check=False)


def test_the_runner_and_a_worker_process_need_no_web_framework(served_onnx, test_split):
    images, labels = test_split
    data = [png(images[i].numpy()) for i in range(3)]
    request = {"polarity": "auto", "threshold": None, "multi": False, "names": ["a.png", "b.png", "c.png"],
               "sizes": [len(d) for d in data]}
    unsure = dict(request, threshold=1.0, names=["a.png"], sizes=[len(data[0])])
    done = run_worker(ServeSettings(served_onnx, worker_nice=0), [message(request, data), message(unsure, data[:1])],
                      block_web=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    hello, answer, strict = replies(done.stdout)
    assert hello["metadata"]["normalisation"] == {"mean": 0.1307, "std": 0.3081}
    assert [a["name"] for a in answer["answers"]] == ["a.png", "b.png", "c.png"]
    assert [a["digit"] for a in answer["answers"]] == [int(labels[i]) for i in range(3)]
    assert strict["answers"][0]["digit"] is None and strict["answers"][0]["reason"].startswith("unsure")


def test_runner_imports_no_web_framework():
    code = BLOCK_WEB + textwrap.dedent("""
        import digitlab.serve.runner, digitlab.serve.settings, digitlab.serve.workers
        assert not {"fastapi", "starlette", "anyio"} & set(sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_a_corrupt_checkpoint_ends_a_worker_with_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header at all" + bytes(range(256)))
    done = run_worker(ServeSettings(bad, backend="torch", worker_nice=0), [])
    stderr = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in stderr, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "worker process: error" in lines[0] and str(bad) in lines[0]


def test_settings_that_are_not_json_end_a_worker_with_one_line():
    done = subprocess.run([sys.executable, "-m", "digitlab.serve.workers"], input=message("{oops"),
                          capture_output=True, timeout=120, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in stderr and "not JSON" in stderr, stderr[-2000:]


def test_a_worker_process_saves_a_sample_and_writes_nothing_for_one_it_cannot_read(served_onnx, test_split, tmp_path):
    data = png(test_split[0][0].numpy())
    model = {"arch": "digitnet", "backend": "onnx", "file": "bundled"}

    def sample(label: str, image: bytes) -> bytes:
        return message({"save": {"label": label, "answer": "1", "model": model, "source": "body"},
                        "names": ["body"], "sizes": [len(image)]}, [image])

    done = run_worker(ServeSettings(served_onnx, worker_nice=0, collect=tmp_path),
                      [sample("7", data), sample("3", b"a shopping list")], block_web=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    _, saved, refused = replies(done.stdout)
    path = tmp_path / saved["saved"]["path"]
    assert path.parent == tmp_path / "7" and path.is_file() and path.with_suffix(".json").is_file()
    assert refused["saved"]["status"] == 415 and "error" in refused["saved"]
    assert sorted(p.parent.name for p in tmp_path.rglob("*.png")) == ["7"]
