"""Shared fixtures. MNIST comes from $DIGITLAB_DATA (CI points it at ../shared/mnist); tests never download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from digitlab.data import FILES

ROOT = Path(__file__).resolve().parents[1]


def _find_mnist() -> Path | None:
    candidates = [os.environ.get("DIGITLAB_DATA"), ROOT.parent / "shared" / "mnist"]
    for candidate in candidates:
        if candidate and all((Path(candidate) / name).is_file() for name, _ in FILES.values()):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    found = _find_mnist()
    if found is None:
        pytest.skip("MNIST files not found: set DIGITLAB_DATA to a folder holding the four IDX files")
    return found


@pytest.fixture(autouse=True)
def _data_env(monkeypatch, request):
    """Point every test at the local MNIST files, so nothing can reach for the network."""
    found = _find_mnist()
    if found is not None:
        monkeypatch.setenv("DIGITLAB_DATA", str(found))
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(request.config.cache.mkdir("xdg"))))


@pytest.fixture(scope="session")
def test_split(mnist_dir):
    from digitlab.data import load_mnist

    return load_mnist("test", mnist_dir)
