"""Shared fixtures. MNIST comes from $DIGITLAB_DATA (CI points it at ../shared/mnist); tests never download."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from digitlab.datasets.mnist import FILES

ROOT = Path(__file__).resolve().parents[1]

# The first lines of a script that must run without PyTorch: any import of torch fails, so a test of the torch-free
# side runs the script in a fresh interpreter and learns whether anything reached for it
# (tests/training/test_export.py checks that the blocker does stop torch).
BLOCK_TORCH = """\
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (imported: {name})")

sys.meta_path.insert(0, NoTorch())
"""


@pytest.fixture
def block_torch() -> str:
    """BLOCK_TORCH, for a test to put at the top of the script it runs."""
    return BLOCK_TORCH


def _find(variable: str, shared: str, names) -> Path | None:
    """The folder named by ``variable``, else ``../shared/<shared>`` beside the checkout, if it holds every file."""
    for candidate in (os.environ.get(variable), ROOT.parent / "shared" / shared):
        if candidate and all((Path(candidate) / name).is_file() for name in names):
            return Path(candidate)
    return None


def _find_mnist() -> Path | None:
    return _find("DIGITLAB_DATA", "mnist", [name for name, _ in FILES.values()])


def _found_or_skip(found: Path | None, missing: str) -> Path:
    if found is None:
        pytest.skip(missing)
    return found


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _found_or_skip(_find_mnist(), "MNIST files not found: set DIGITLAB_DATA to a folder holding the four IDX "
                                         "files")


def _find_realdata() -> Path | None:
    from digitlab.datasets.writers import FILES as REAL_FILES

    return _find("DIGITLAB_REALDATA", "realdata", REAL_FILES.values())


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """The folder of real handwriting by other writers (CI points DIGITLAB_REALDATA at ../shared/realdata)."""
    return _found_or_skip(_find_realdata(), "real handwriting not found: set DIGITLAB_REALDATA to a folder holding "
                                            "its .npz files")


def _tiny_realdata(folder, test_split, per_file: int = 20):
    """A folder shaped like the real one, made of MNIST test digits (as digits and as "letters"), with writer ids:
    the mechanism's tests need no real handwriting."""
    images, labels = test_split[0].numpy()[:per_file], test_split[1].numpy()[:per_file]
    writer = np.arange(per_file, dtype=np.int16) % 10
    letters = np.array(list("AEHKMNPRTUVWXYAEHKMN"))[:per_file]
    from digitlab.datasets.writers import FILES as REAL_FILES, LETTER_SOURCES

    for source, name in REAL_FILES.items():
        arrays = {"images": images, "labels": letters if source in LETTER_SOURCES else labels}
        if source in ("chars74k", "chars74k-letters"):
            arrays["writer"] = writer
        if source == "femnist":
            arrays["writer"] = np.array([f"f{w:04d}_00" for w in writer])
        np.savez(folder / name, **arrays)
    return folder


@pytest.fixture
def tiny_realdata(test_split):
    """``make(folder, per_file=20)``: a folder shaped like the real handwriting's, of MNIST test digits."""
    def make(folder, per_file: int = 20):
        folder.mkdir(parents=True, exist_ok=True)
        return _tiny_realdata(folder, test_split, per_file)
    return make


@pytest.fixture(autouse=True)
def _data_env(monkeypatch, request):
    """Point every test at the local MNIST files, so nothing can reach for the network; real handwriting by other
    writers is not configured unless a test asks for it (``realdata_dir``, or a folder of its own)."""
    found = _find_mnist()
    if found is not None:
        monkeypatch.setenv("DIGITLAB_DATA", str(found))
    monkeypatch.delenv("DIGITLAB_REALDATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(request.config.cache.mkdir("xdg"))))


@pytest.fixture(scope="session")
def test_split(mnist_dir):
    from digitlab.training.data import load_mnist

    return load_mnist("test", mnist_dir)


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory, test_split, mnist_dir):
    """A conv3_dense64 trained for one pass over 6,000 training images (quick on a CPU, and it reads most test digits
    right), saved as a checkpoint: a real model for the image tests that does not depend on the bundled one."""
    import torch
    import torch.nn.functional as F

    from digitlab.training import checkpoint
    from digitlab.training.config import TrainConfig
    from digitlab.training.data import attach_data_config, load_mnist, to_input
    from digitlab.training.models import create_model

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a small busy CPU, one thread trains this little network fastest
    data = TrainConfig(model="conv3_dense64").data_config()
    images, labels = load_mnist("train", mnist_dir)
    x, y = to_input(images[:6000], data), labels[:6000]
    model = attach_data_config(create_model("conv3_dense64"), data)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for start in range(0, len(y), 64):
        loss = F.cross_entropy(model(x[start:start + 64]), y[start:start + 64])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    checkpoint.save(path, model.eval(), {})
    return path


# --- a model to serve and export ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def served_checkpoint(request) -> Path:
    """The bundled model when this checkout has it, else ``small_model_path`` (trained here in seconds)."""
    from digitlab.training import checkpoint

    if checkpoint.BUNDLED.is_file():
        return checkpoint.BUNDLED
    return request.getfixturevalue("small_model_path")


@pytest.fixture(scope="session")
def served_onnx(served_checkpoint, mnist_dir, tmp_path_factory) -> Path:
    """``served_checkpoint`` exported by ``digitlab.training.export`` (checked against PyTorch on 500 test images)."""
    from digitlab.training.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(served_checkpoint, out, check_images=500, data_dir=mnist_dir)
    return out


# --- people's own labelled images -------------------------------------------------------------------------------------

def write_digit(path: Path, image, scale: int = 4) -> Path:
    """A 28x28 MNIST digit saved as a person's file: enlarged, dark ink on white paper (PNG or JPEG by suffix)."""
    import numpy as np
    from PIL import Image

    pixels = 255 - np.asarray(image, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).resize((28 * scale, 28 * scale), Image.BILINEAR).save(path)
    return path


@pytest.fixture(scope="session")
def labelled_folders(tmp_path_factory, test_split):
    """Small labelled folders in each layout, each with the troubles people's folders have: a broken file, a blank
    page, a name that says two digits, a file outside any class. Returns {layout: folder} and the digits used."""
    import json

    import numpy as np
    from PIL import Image

    images, labels = test_split
    chosen = [int(np.nonzero(labels.numpy() == digit)[0][k]) for digit in range(10) for k in range(3)]
    root = tmp_path_factory.mktemp("labelled")
    blank = Image.new("L", (100, 100), 255)

    classes = root / "classes"
    for n, index in enumerate(chosen):
        digit = int(labels[index])
        write_digit(classes / str(digit) / f"d{n:02d}.png", images[index])
        (classes / str(digit) / f"d{n:02d}.json").write_text(json.dumps({"label": digit}))  # a sidecar: ignored
    (classes / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    blank.save(classes / "4" / "blank.png")
    blank.save(classes / "stray.png")
    (classes / "misc").mkdir()
    blank.save(classes / "misc" / "other.png")

    names = root / "names"
    for n, index in enumerate(chosen):
        digit = int(labels[index])
        pattern = ("{d}_scan{n:02d}", "scan{n:02d}_{d}", "scan-{n:02d}-{d}")[n % 3]
        write_digit(names / (pattern.format(d=digit, n=n) + ".png"), images[index])
    write_digit(names / "3_seven_7.png", images[chosen[0]])
    write_digit(names / "img_0042.png", images[chosen[0]])
    (names / "notes.txt").write_text("not an image")

    table = root / "table"
    rows = ["path,label"]
    for n, index in enumerate(chosen):
        write_digit(table / "img" / f"{n:03d}.png", images[index])
        rows.append(f"img/{n:03d}.png,{int(labels[index])}")
    rows += ["img/missing.png,3", "img/other.png,seven", "img/001.png,4,extra", "img/002.png,2"]
    (table / "labels.csv").write_text("\n".join(rows) + "\n")
    return {"class folders": classes, "file names": names, "csv": table}, labels[chosen].numpy()


@pytest.fixture
def check_picture():
    """A check that a PNG the project drew is a real picture: it opens, it is at least this big, and it is not one
    flat colour (the variance of its gray pixels), so an empty or broken figure fails."""
    import numpy as np
    from PIL import Image

    def check(path, min_width: int = 200, min_height: int = 150) -> tuple[int, int]:
        with Image.open(path) as picture:
            assert picture.format == "PNG", path
            width, height = picture.size
            gray = np.asarray(picture.convert("L"), dtype=np.float64)
        assert width >= min_width and height >= min_height, (path, picture.size)
        assert gray.std() > 10, f"{path}: nearly blank (pixel standard deviation {gray.std():.1f})"
        return width, height

    return check


# --- a real server process --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def start_server():
    """A function: ``start_server(*args, env=None)`` runs ``digitlab serve ARGS`` on a free loopback port, waits until
    ``/api/health`` answers and returns (process, url, health). Its stdout and stderr come together in
    ``process.stdout`` (text). A server that exits, or gives no answer within a minute, fails the test with what it
    printed. The caller stops it."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    def start(*args: str, env: dict | None = None):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", "--port", str(port), *args], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                    return process, url, json.load(response)
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"digitlab serve {' '.join(args)} did not answer: {process.communicate()[0][-2000:]}")
                time.sleep(0.2)

    return start
