"""engine: a checkpoint behind one numpy call."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from digitlab.training.checkpoint import CheckpointError
from digitlab.recognition.backends import BUNDLED_INT8, backend_for, bundled_int8
from digitlab.recognition.engine import TorchEngine, load_engine


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


# --- the default: a checkpoint's own export beside it runs on onnxruntime ---------------------------------------------

@pytest.fixture
def bundled_pair(tmp_path):
    """A copy of the bundled checkpoint and its fp32 export, side by side as `digitlab export` leaves them."""
    import shutil

    from digitlab.recognition.engine import BUNDLED_ONNX

    checkpoint = tmp_path / "model.safetensors"
    shutil.copy(BUNDLED_ONNX.with_suffix(".safetensors"), checkpoint)
    shutil.copy(BUNDLED_ONNX, tmp_path / "model.onnx")
    return checkpoint


def test_the_default_runs_a_checkpoints_own_export_and_torch_when_asked(bundled_pair):
    from digitlab.recognition.engine import OnnxEngine

    assert isinstance(load_engine(bundled_pair), OnnxEngine) and backend_for(bundled_pair) == "onnx"
    assert isinstance(load_engine(bundled_pair, "onnx"), OnnxEngine)
    assert isinstance(load_engine(bundled_pair, "torch"), TorchEngine) and backend_for(bundled_pair, "torch") == "torch"
    assert isinstance(load_engine(), OnnxEngine)  # the bundled model, whose export ships beside it


def test_an_export_of_another_checkpoint_beside_it_is_not_used(bundled_pair, small_model_path):
    import shutil

    shutil.copy(small_model_path, bundled_pair)  # another model under the export's stem: its digest differs
    assert isinstance(load_engine(bundled_pair), TorchEngine) and backend_for(bundled_pair) == "torch"
    with pytest.raises(ValueError, match="model.onnx is not an fp32 export of this very file"):
        load_engine(bundled_pair, "onnx")
    (bundled_pair.with_suffix(".onnx")).unlink()
    assert isinstance(load_engine(bundled_pair), TorchEngine)
    with pytest.raises(ValueError, match="there is no .*model.onnx; make one with `digitlab export"):
        load_engine(bundled_pair, "onnx")


@pytest.mark.skipif(not BUNDLED_INT8.is_file(), reason="no bundled int8 model in this checkout")
def test_an_int8_export_is_not_taken_for_the_checkpoint(bundled_pair):
    import shutil

    shutil.copy(BUNDLED_INT8, bundled_pair.with_suffix(".onnx"))  # it records the same checkpoint's digest
    assert isinstance(load_engine(bundled_pair), TorchEngine)


def test_an_exports_record_is_read_as_onnxruntime_reads_it(tmp_path):
    """The choice of a backend reads an export's record from its protobuf without onnxruntime (which imports numpy):
    the same keys and values onnxruntime gives, and None for a file that is no whole ONNX model."""
    from digitlab.recognition.backends import BUNDLED_ONNX, onnx_metadata
    from digitlab.recognition.engine import OnnxEngine

    for path in (BUNDLED_ONNX, BUNDLED_INT8) if BUNDLED_INT8.is_file() else (BUNDLED_ONNX,):
        assert onnx_metadata(path) == dict(OnnxEngine(path).session.get_modelmeta().custom_metadata_map)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(BUNDLED_ONNX.read_bytes()[:5000])  # inside the graph
    assert onnx_metadata(cut) is None and onnx_metadata(BUNDLED_ONNX.with_suffix(".safetensors")) is None


def test_the_default_engine_and_torch_agree_on_the_bundled_model(test_split):
    from digitlab.recognition.engine import OnnxEngine
    from digitlab.recognition.engine import normalise
    from digitlab.training.data import DataConfig

    default, torch_engine = load_engine(), load_engine(backend="torch")
    assert isinstance(default, OnnxEngine) and default.metadata == torch_engine.metadata
    data = DataConfig.from_metadata(default.metadata)
    batch = normalise(test_split[0][:1000].numpy() / 255.0, data.mean, data.std)  # (1000, 1, 28, 28)

    def probabilities(engine):
        logits = engine.logits(batch)
        exp = np.exp(logits - logits.max(1, keepdims=True))
        return exp / exp.sum(1, keepdims=True)

    ours, theirs = probabilities(default), probabilities(torch_engine)
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    assert np.abs(ours - theirs).max() < 1e-4


# --- a model that is well formed but broken is refused when it is loaded ------------------------------------------

def _onnx_with(tmp_path, name, change):
    """The bundled ONNX export, changed by ``change(model, metadata)`` and saved as ``name``."""
    onnx = pytest.importorskip("onnx")
    from digitlab.recognition.engine import BUNDLED_ONNX

    model = onnx.load(BUNDLED_ONNX)
    prop = next(p for p in model.metadata_props if p.key == "digitlab")
    metadata = json.loads(prop.value)
    change(model, metadata)
    prop.value = json.dumps(metadata)
    onnx.save(model, tmp_path / name)
    return tmp_path / name


def _nan_weight(model, metadata):
    from onnx import numpy_helper

    largest = max(model.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
    weights = numpy_helper.to_array(largest).copy()
    weights.flat[0] = np.nan
    largest.CopyFrom(numpy_helper.from_array(weights, largest.name))


def _extra_output_first(model, metadata):
    from onnx import TensorProto, helper

    model.graph.node.append(helper.make_node("Identity", [model.graph.input[0].name], ["copy"]))
    outputs = [helper.make_tensor_value_info("copy", TensorProto.FLOAT, None), *model.graph.output]
    del model.graph.output[:]
    model.graph.output.extend(outputs)


def _input_fixed_at_32(model, metadata):
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_value = 32


def _ten_classes_for_eleven_outputs(model, metadata):
    metadata["classes"] = metadata["classes"][:10]


@pytest.mark.parametrize("change, words", [
    (_nan_weight, "not all finite numbers"),
    (_extra_output_first, r"outputs of shape \(3, 1, 28, 28\), not \(3, 11\)"),
    (_input_fixed_at_32, r"not a model that reads a batch of 28x28 digits"),
    (_ten_classes_for_eleven_outputs, r"outputs of shape \(3, 11\), not \(3, 10\)"),
])
def test_a_broken_onnx_model_is_refused_at_load(tmp_path, change, words):
    path = _onnx_with(tmp_path, "broken.onnx", change)
    with pytest.raises(ValueError, match=words) as caught:
        load_engine(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def _checkpoint_with(tmp_path, change):
    """The bundled checkpoint with its tensors changed by ``change(tensors)``, its checksum recomputed so that only
    the values are wrong."""
    from safetensors.torch import save_file

    from digitlab.training import checkpoint

    tensors, metadata = checkpoint.read(checkpoint.BUNDLED)
    change(tensors)
    metadata["weights_sha256"] = checkpoint.weights_digest(tensors)
    path = tmp_path / "broken.safetensors"
    save_file(tensors, str(path), metadata={"digitlab": json.dumps(metadata)})
    return path


@pytest.mark.parametrize("change", [
    lambda tensors: next(v for k, v in tensors.items() if k.endswith("running_var")).fill_(-1.0),
    lambda tensors: [v.fill_(3e38) for v in tensors.values() if v.is_floating_point()],
], ids=["negative-variance", "huge-weights"])
def test_a_checkpoint_whose_outputs_are_not_numbers_is_refused_at_load(tmp_path, change):
    path = _checkpoint_with(tmp_path, change)
    with pytest.raises(ValueError, match="not all finite numbers") as caught:
        load_engine(path)
    assert str(path) in str(caught.value)


def test_predict_says_one_line_and_exits_2_for_a_broken_model(tmp_path, capsys):
    from PIL import Image

    from digitlab.cli import main

    image = tmp_path / "one.png"
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(image)
    path = _onnx_with(tmp_path, "nan.onnx", _nan_weight)
    assert main(["predict", "--json", "--model", str(path), str(image)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "finite" in captured.err


@pytest.mark.parametrize("suffix", [".onnx", ".safetensors"])
def test_metadata_nested_too_deep_is_not_a_valid_model(tmp_path, suffix):
    deep = "[" * 100_000 + "]" * 100_000
    if suffix == ".onnx":
        path = _onnx_with(tmp_path, "deep.onnx", lambda model, metadata: None)
        onnx = pytest.importorskip("onnx")
        model = onnx.load(path)
        next(p for p in model.metadata_props if p.key == "digitlab").value = deep
        onnx.save(model, path)
    else:
        from safetensors.torch import save_file

        from digitlab.training import checkpoint

        path = tmp_path / "deep.safetensors"
        save_file(checkpoint.read(checkpoint.BUNDLED)[0], str(path), metadata={"digitlab": deep})
    with pytest.raises((ValueError, CheckpointError), match="not a valid model: its metadata nests deeper"):
        load_engine(path)
