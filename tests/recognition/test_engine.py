"""engine: a checkpoint behind one numpy call."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from digitlab.training.checkpoint import CheckpointError
from digitlab.recognition.engine import BUNDLED_INT8, TorchEngine, bundled_int8, load_engine


def test_torch_engine_gives_logits_like_the_model(small_model_path, test_split):
    import torch

    from digitlab.training import checkpoint
    from digitlab.training.data import DataConfig, to_input

    engine = load_engine(small_model_path)
    assert isinstance(engine, TorchEngine) and engine.metadata["arch"] == "conv3_dense64"
    x = to_input(test_split[0][:5], DataConfig.from_metadata(engine.metadata))
    model, _ = checkpoint.load(small_model_path)
    with torch.no_grad():
        expected = model(x).numpy()
    logits = engine.logits(x.numpy())
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    assert np.allclose(logits, expected, atol=1e-5)
    assert engine.logits(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)


def test_bad_batch_shape_and_backend(small_model_path):
    engine = load_engine(small_model_path)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        engine.logits(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="unknown backend"):
        load_engine(small_model_path, backend="tensorflow")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_engine("missing.safetensors")


def test_the_bundled_engine_has_an_eleventh_output_even_for_an_empty_batch():
    engine = load_engine()
    assert engine.metadata["classes"][-1] == "not a digit"
    assert engine.logits(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 11)
    assert engine.logits(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 11)


INT8_WITHOUT_TORCH = textwrap.dedent("""
    import contextlib, io, json, sys

    from digitlab.cli import main
    from digitlab.serve.settings import ServeSettings

    answers = []
    for options in (["--int8"], ["--model", sys.argv[1]], ["--backend", "onnx", "--model", sys.argv[1]]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["predict", *options, "--json", sys.argv[2]]) == 0, options
        answers.append(json.loads(out.getvalue())["digit"])
    from fastapi.testclient import TestClient
    from digitlab.serve.app import create_app

    settings = ServeSettings(sys.argv[1])  # what serve --model x.int8.onnx builds
    assert settings.backend == "onnx"
    with TestClient(create_app(settings)) as client:
        answers.append(client.post("/api/predict", content=open(sys.argv[2], "rb").read()).json()["digit"])
    assert "torch" not in sys.modules
    print(json.dumps(answers))
""")


@pytest.mark.skipif(not BUNDLED_INT8.is_file(), reason="no bundled int8 model in this checkout")
def test_predict_runs_the_int8_model_without_torch(test_split, tmp_path, block_torch):
    from PIL import Image

    image, label = test_split[0][0].numpy(), int(test_split[1][0])
    Image.fromarray(image).save(tmp_path / "digit.png")
    (tmp_path / "int8.py").write_text(block_torch + INT8_WITHOUT_TORCH)
    run = subprocess.run([sys.executable, str(tmp_path / "int8.py"), str(BUNDLED_INT8), str(tmp_path / "digit.png")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1]) == [label] * 4  # predict three ways, and the API


def test_int8_means_the_bundled_int8_model_on_onnxruntime(small_model_path):
    if BUNDLED_INT8.is_file():
        assert bundled_int8(None, None) == bundled_int8(None, "onnx") == str(BUNDLED_INT8)
    with pytest.raises(ValueError, match="--int8 runs the bundled model's int8 export, not --model"):
        bundled_int8(small_model_path, None)
    with pytest.raises(ValueError, match="--int8 runs on onnxruntime, not --backend torch"):
        bundled_int8(None, "torch")


def test_predict_and_serve_refuse_int8_with_another_model(small_model_path, tmp_path, capsys):
    from digitlab.cli import main

    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert main(["predict", "--int8", "--model", str(small_model_path), str(image)]) == 2
    assert main(["serve", "--int8", "--backend", "torch", "--port", "1"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "not --model" in errors[0] and "not --backend torch" in errors[1]
