"""int8 quantisation: a real int8 graph whose stored accuracies are the ones it has, and a check that refuses a
quantisation that reads MNIST worse (a spoilt calibration, a tolerance no model can meet)."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest

from digitlab.recognition.engine import OnnxEngine
from digitlab.training import checkpoint, quantise
from digitlab.training.export import export_onnx, to_onnx
from digitlab.training.quantise import AccuracyLossError


@pytest.fixture(scope="module")
def fp32_graph(small_model_path):
    """The small model's fp32 export as export_onnx builds it (its metadata included), without writing a file."""
    model, meta = checkpoint.load(small_model_path)
    proto = onnx.load_from_string(to_onnx(model))
    proto.metadata_props.add(key="digitlab", value=json.dumps(meta))
    return proto.SerializeToString(), meta


def test_the_int8_file_is_int8_and_its_stored_accuracies_are_its_own(small_model_path, mnist_dir, test_split,
                                                                      tmp_path):
    out = tmp_path / "small.int8.onnx"
    report = export_onnx(small_model_path, out, check_images=100, data_dir=mnist_dir, int8=True,
                         calibration_images=300)
    proto = onnx.load(str(out))
    conv_weights = [init.data_type for init in proto.graph.initializer if len(init.dims) == 4]
    # conv3_dense64's three convolutions: the one over the image's single channel stays fp32 (quantise.fp32_nodes)
    assert sorted(conv_weights) == sorted([onnx.TensorProto.FLOAT, onnx.TensorProto.INT8, onnx.TensorProto.INT8])
    assert "DequantizeLinear" in {node.op_type for node in proto.graph.node}

    engine = OnnxEngine(out)
    props = engine.session.get_modelmeta().custom_metadata_map
    assert engine.metadata == checkpoint.load(small_model_path)[1]  # still describes itself as the checkpoint does
    stored = json.loads(props["digitlab_int8"])
    assert stored == report.int8
    assert stored["test_images"] == 10_000 and stored["calibration_images"] == 300
    assert stored["tolerance_points"] == quantise.TOLERANCE_POINTS
    assert [n.op_type for n in proto.graph.node if n.name in stored["fp32_nodes"]] == ["Conv", "MaxPool", "Relu"]
    assert stored["accuracy_loss_points"] <= quantise.TOLERANCE_POINTS

    images, labels = test_split
    inputs = quantise.normalised(images.numpy(), engine.metadata)
    assert quantise.accuracy(out, inputs, labels.numpy()) == stored["int8_accuracy"]
    assert stored["fp32_accuracy"] > 0.9
    assert stored["accuracy_loss_points"] == pytest.approx(100 * (stored["fp32_accuracy"] - stored["int8_accuracy"]))


def test_a_spoilt_calibration_is_refused(fp32_graph, mnist_dir):
    # Calibrated on blank images, every range is far too narrow: the int8 model saturates and reads digits wrongly.
    # (1,000 test images: one image is 0.1 points, so both tests allow 0.5.)
    graph, meta = fp32_graph
    blank = np.full((64, 1, 28, 28), -meta["normalisation"]["mean"] / meta["normalisation"]["std"], np.float32)
    with pytest.raises(AccuracyLossError, match="points lost, more than the 0.5 allowed"):
        quantise.quantise_checked(graph, meta, calibration=blank, test_images=1000, data_dir=mnist_dir, tolerance=0.5)


def test_a_good_calibration_passes_the_same_check(fp32_graph, mnist_dir):
    # The check above fails for the calibration, not for the model or the test images.
    graph, meta = fp32_graph
    _, record = quantise.quantise_checked(graph, meta, calibration_images=300, test_images=1000, data_dir=mnist_dir,
                                          tolerance=0.5)
    assert record["accuracy_loss_points"] <= 0.5 and record["test_images"] == 1000


def test_no_model_meets_a_negative_tolerance_and_nothing_is_written(small_model_path, mnist_dir, tmp_path):
    with pytest.raises(AccuracyLossError, match="nothing was written"):
        export_onnx(small_model_path, tmp_path / "x.int8.onnx", check_images=100, data_dir=mnist_dir, int8=True,
                    int8_tolerance=-1, calibration_images=100)
    assert list(tmp_path.iterdir()) == []


def test_every_format_and_setting_quantises(fp32_graph, mnist_dir, test_split):
    # The benchmark compares them all; each must give a model that still reads digits.
    graph, meta = fp32_graph
    calibration = quantise.calibration_inputs(meta, 100, mnist_dir)
    images = quantise.normalised(test_split[0][:300].numpy(), meta)
    for quant_format in quantise.FORMATS:
        for per_channel in (False, True):
            proto = onnx.load_from_string(quantise.quantise(graph, calibration, quant_format=quant_format,
                                                            per_channel=per_channel))
            session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
            predicted = session.run(None, {"image": images})[0].argmax(1)
            assert (predicted == test_split[1][:300].numpy()).mean() > 0.8, (quant_format, per_channel)
    with pytest.raises(ValueError, match="qoperator, qdq"):
        quantise.quantise(graph, calibration, quant_format="int4")


def test_calibration_images_are_a_seeded_sample_of_the_training_split(fp32_graph, mnist_dir):
    meta = fp32_graph[1]
    first, again = quantise.calibration_inputs(meta, 50, mnist_dir), quantise.calibration_inputs(meta, 50, mnist_dir)
    assert first.shape == (50, 1, 28, 28) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="1 to 60000"):
        quantise.calibration_inputs(meta, 0, mnist_dir)
