"""examples/tour.ipynb runs from top to bottom in a real Jupyter kernel (nbclient), on the local MNIST files, and
shows what it says it shows: the pictures, and the bundled model reading the drawn 4."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_tour_notebook_runs_top_to_bottom(mnist_dir, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    notebook = nbformat.read(ROOT / "examples" / "tour.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 7  # digits, curves, confusion, mistakes, filters, kernels, feature maps, the photo
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "test accuracy" in printed
    assert "the bundled model reads: 4" in printed
    assert "report.html" in str(notebook.cells[-1].outputs[-1]["data"]["text/plain"])
