"""ONNX export: onnxruntime against PyTorch on real MNIST test images, the self-describing file, a refused export,
the CLI, and the onnx backend running with PyTorch made impossible to import."""

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from digitlab.training import checkpoint, export
from digitlab.cli import main
from digitlab.recognition.backends import BUNDLED_INT8, BUNDLED_ONNX
from digitlab.recognition.engine import OnnxEngine, load_engine
from digitlab.training.export import ExportError, export_onnx


def normalised(images: torch.Tensor) -> np.ndarray:
    return ((images.numpy().astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]


def test_onnxruntime_matches_pytorch_at_any_batch_size(served_onnx, served_checkpoint, test_split):
    model, _ = checkpoint.load(served_checkpoint)
    session = onnxruntime.InferenceSession(str(served_onnx), providers=["CPUExecutionProvider"])
    images = normalised(test_split[0][2000:2300])  # images the export's own check did not use
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    for size in (1, 7, 300):
        got = session.run(None, {"image": images[:size]})[0]
        assert got.shape == (size, expected.shape[1])  # 10 digits, or 11 with "not a digit"
        assert np.abs(got - expected[:size]).max() <= 1e-4


def test_the_file_describes_itself(served_onnx, served_checkpoint):
    _, meta = checkpoint.load(served_checkpoint)
    session = onnxruntime.InferenceSession(str(served_onnx), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["digitlab"]) == meta
    check = json.loads(props["digitlab_export"])
    assert check["max_abs_diff"] <= 1e-4 and check["images_checked"] == 500 and check["class_agreement"] > 0.99
    assert [d for d in session.get_inputs()[0].shape] == ["batch", 1, 28, 28]
    assert OnnxEngine(served_onnx).metadata == meta


def test_a_graph_that_disagrees_is_refused_and_nothing_is_written(served_checkpoint, mnist_dir, tmp_path,
                                                                  monkeypatch):
    real_to_onnx = export.to_onnx

    def off_by_a_little(model, opset=export.OPSET):  # what a wrong exporter would hand over
        other = copy.deepcopy(model)
        with torch.no_grad():
            next(other.parameters()).add_(0.05)
        return real_to_onnx(other, opset)

    monkeypatch.setattr(export, "to_onnx", off_by_a_little)
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(served_checkpoint, out, check_images=200, data_dir=mnist_dir)
    assert list(tmp_path.iterdir()) == []


def test_export_command(served_checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(served_checkpoint), "--onnx", str(out), "--check-images", "100"]) == 0
    assert "max |logit difference|" in capsys.readouterr().out and out.is_file()
    assert main(["export", str(served_checkpoint), "--onnx", str(tmp_path / "x.txt")]) == 2
    assert main(["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "new.onnx")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_onnx_engine_explains_wrong_files(served_checkpoint, tmp_path):
    import shutil

    alone = tmp_path / "alone.safetensors"   # a checkpoint with no export of its own beside it
    shutil.copy(served_checkpoint, alone)
    with pytest.raises(ValueError, match="digitlab export"):
        load_engine(alone, "onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 this is not protobuf" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        OnnxEngine(garbage)
    with pytest.raises(ValueError, match="no such ONNX model"):
        OnnxEngine(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        load_engine(None, "tensorflow")


TORCH_FREE = textwrap.dedent("""
    import json, sys

    onnx_path, image_path = sys.argv[1], sys.argv[2]

    from digitlab.recognition.engine import load_engine
    from digitlab.recognition.predict import Recognizer
    direct = Recognizer(load_engine(onnx_path, "onnx")).predict_one(image_path)

    from fastapi.testclient import TestClient
    from digitlab.serve.app import create_app
    from digitlab.serve.settings import ServeSettings
    with TestClient(create_app(ServeSettings(onnx_path, backend="onnx"))) as client:
        served = client.post("/api/predict", content=open(image_path, "rb").read()).json()

    from digitlab.cli import main
    import contextlib, io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["predict", "--backend", "onnx", "--model", onnx_path, "--json", image_path])
    assert code == 0, code
    cli = json.loads(out.getvalue().splitlines()[0])

    assert "torch" not in sys.modules
    print(json.dumps({"direct": direct.digit, "served": served["digit"], "cli": cli["digit"],
                      "probabilities": direct.digits[0].probabilities}))
""")


def test_the_onnx_backend_never_imports_torch(served_onnx, served_checkpoint, test_split, tmp_path, block_torch):
    from PIL import Image

    image_path = tmp_path / "digit.png"
    Image.fromarray(test_split[0][0].numpy()).save(image_path)
    script = tmp_path / "torch_free.py"
    script.write_text(block_torch + TORCH_FREE)
    run = subprocess.run([sys.executable, str(script), str(served_onnx), str(image_path)], capture_output=True,
                         text=True, timeout=120, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    from digitlab.recognition.predict import Recognizer

    expected = Recognizer(load_engine(served_checkpoint, "torch")).predict_one(image_path)
    assert result["direct"] == result["served"] == result["cli"] == expected.digit
    np.testing.assert_allclose(result["probabilities"], expected.digits[0].probabilities, atol=1e-4)


def test_the_blocker_would_catch_torch(tmp_path, block_torch):
    # The test above means something only if the blocker stops an import of torch for real.
    script = tmp_path / "catch.py"
    script.write_text(block_torch + "from digitlab.training import checkpoint\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "torch is blocked" in run.stderr


@pytest.mark.skipif(not BUNDLED_ONNX.is_file() or not checkpoint.BUNDLED.is_file(),
                    reason="no bundled model in this checkout")
def test_bundled_onnx_is_the_bundled_checkpoint(test_split):
    engine = OnnxEngine()
    _, meta = checkpoint.load()
    assert engine.metadata == meta
    check = json.loads(engine.session.get_modelmeta().custom_metadata_map["digitlab_export"])
    import hashlib

    assert check["source_sha256"] == hashlib.sha256(Path(checkpoint.BUNDLED).read_bytes()).hexdigest()
    images = normalised(test_split[0][:256])
    with torch.inference_mode():
        expected = checkpoint.load()[0](torch.from_numpy(images)).numpy()
    assert np.abs(engine.logits(images) - expected).max() <= 1e-4


def test_export_never_replaces_an_existing_file_unless_asked(served_checkpoint, tmp_path, capsys):
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"someone's model")
    assert main(["export", str(served_checkpoint), "--onnx", str(out), "--check-images", "100"]) == 2
    message = capsys.readouterr().err.strip()
    assert "already exists" in message and "--overwrite" in message and "\n" not in message
    assert out.read_bytes() == b"someone's model"
    assert main(["export", str(served_checkpoint), "--onnx", str(out), "--check-images", "100", "--overwrite"]) == 0
    assert out.read_bytes()[:2] != b"so" and out.stat().st_size > 1000


def test_int8_export_command_refuses_a_loss_and_an_existing_file(small_model_path, tmp_path, capsys):
    out = tmp_path / "small.int8.onnx"
    base = ["export", str(small_model_path), "--onnx", str(out), "--check-images", "100", "--int8",
            "--calibration-images", "200"]
    assert main(base + ["--int8-tolerance", "-1"]) == 2  # no model meets it: a real check, and it refuses
    message = capsys.readouterr().err.strip()
    assert "points lost" in message and "nothing was written" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []
    assert main(["export", str(small_model_path), "--onnx", str(out), "--int8-tolerance", "1"]) == 2  # no --int8
    assert "add --int8" in capsys.readouterr().err

    # This half-trained model's int8 copy loses up to a tenth of a point, depending on the CPU's int8 kernels
    # (0.06 on an AVX-512 VNNI AMD host): the command's behaviour is under test here, with room for that; the
    # bundled model's int8 export is held to the default tolerance below.
    within = base + ["--int8-tolerance", "0.5"]
    assert main(within) == 0
    printed = capsys.readouterr().out
    assert "int8" in printed and "fp32 ->" in printed and "10,000 images" in printed
    written = out.read_bytes()
    assert main(within) == 2 and "already exists" in capsys.readouterr().err  # the export's own rule, also for int8
    assert out.read_bytes() == written


@pytest.mark.skipif(not BUNDLED_INT8.is_file() or not checkpoint.BUNDLED.is_file(),
                    reason="no bundled int8 model in this checkout")
def test_bundled_int8_is_the_bundled_checkpoint_within_the_tolerance(test_split):
    import hashlib

    engine = OnnxEngine(BUNDLED_INT8)
    props = engine.session.get_modelmeta().custom_metadata_map
    _, meta = checkpoint.load()
    assert engine.metadata == meta
    check = json.loads(props["digitlab_export"])
    assert check["source_sha256"] == hashlib.sha256(Path(checkpoint.BUNDLED).read_bytes()).hexdigest()
    int8 = json.loads(props["digitlab_int8"])
    assert int8["test_images"] == 10_000 and int8["accuracy_loss_points"] <= int8["tolerance_points"] <= 0.05
    images, labels = normalised(test_split[0][:1000]), test_split[1][:1000].numpy()
    agree = (engine.logits(images).argmax(1) == OnnxEngine(BUNDLED_ONNX).logits(images).argmax(1)).mean()
    assert agree >= 0.998 and (engine.logits(images).argmax(1) == labels).mean() > 0.99
