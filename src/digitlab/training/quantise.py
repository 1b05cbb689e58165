"""An exported fp32 ONNX graph -> an int8 one that onnxruntime runs faster, refused when it reads MNIST worse.

    digitlab export runs/x/model.safetensors --onnx model.int8.onnx --int8

Static quantisation (``onnxruntime.quantization.quantize_static``): weights become int8, activations uint8, their
ranges calibrated on MNIST training images normalised exactly as the engine normalises a person's image; the first
stage, a convolution over the image's one channel, stays fp32 (``fp32_nodes``). The format, per-channel or not, the
fp32 first stage and onnxruntime's quantisation pre-processing were chosen by measuring them side by side
(``benchmarks/int8_throughput.py --variants``; numbers in docs/serving.md, "int8").

Before anything is written, the fp32 and int8 files both read the MNIST test set through ``engine.OnnxEngine``
(what predict and serve run); an int8 model that loses more than ``tolerance`` percentage points is refused. The
accuracies, their difference and the calibration are stored in the file under the ONNX metadata key
``digitlab_int8``, beside the checkpoint's own metadata, so the file says what it gave up.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

CALIBRATION_IMAGES = 1000
TOLERANCE_POINTS = 0.05       # percentage points of MNIST test accuracy the int8 model may lose
TEST_IMAGES = 10_000          # the whole MNIST test set
FORMATS = ("qoperator", "qdq")
FORMAT = "qdq"                # measured, and QOperator drops a ReLU after a max pool (docs/serving.md, "int8")
PER_CHANNEL = True
PREPROCESS = False
SINGLE_CHANNEL_FP32 = True    # see fp32_nodes
CALIBRATION_SEED = 0


class AccuracyLossError(Exception):
    """The int8 model reads MNIST worse than the fp32 one by more than the tolerance allows."""


def normalised(images: np.ndarray, meta: dict) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float32, normalised by the one function the engine's callers use."""
    from digitlab.recognition.engine import normalise
    from digitlab.training.data import DataConfig

    data = DataConfig.from_metadata(meta)
    return normalise(images / 255.0, data.mean, data.std)


def calibration_inputs(meta: dict, count: int = CALIBRATION_IMAGES,
                       data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """``count`` MNIST training images, a seeded sample across the whole split (so every digit and writer style is
    in it), in the model's input form: (count, 1, 28, 28) float32."""
    from digitlab.training.data import load_mnist

    images, _ = load_mnist("train", data_dir)
    if not 1 <= count <= len(images):
        raise ValueError(f"the calibration takes 1 to {len(images)} training images, not {count}")
    chosen = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(len(images), count, replace=False))
    return normalised(images.numpy()[chosen], meta)


def fp32_nodes(graph: bytes) -> list[str]:
    """The nodes to leave in fp32: each convolution over a single input channel (the image itself, or a depthwise
    one), and the layers after it up to the next convolution or dense layer. onnxruntime's int8 kernel for such a
    convolution is slower than its fp32 one, and stopping there would make it run the max pool that follows on
    uint8 in a slow layout; from the next convolution on, int8 is faster (docs/serving.md, "int8")."""
    import onnx

    proto = onnx.load_from_string(graph)
    shapes = {init.name: list(init.dims) for init in proto.graph.initializer}
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    kept = []
    for node in proto.graph.node:
        weight = shapes.get(node.input[1], []) if node.op_type == "Conv" else []
        if len(weight) == 4 and weight[1] == 1:
            kept.append(node.name)
            following = consumers.get(node.output[0], [])
            while len(following) == 1 and following[0].op_type not in ("Conv", "Gemm", "MatMul"):
                kept.append(following[0].name)
                following = consumers.get(following[0].output[0], [])
    return kept


def quantise(graph: bytes, calibration: np.ndarray, *, quant_format: str = FORMAT, per_channel: bool = PER_CHANNEL,
             preprocess: bool = PREPROCESS, single_channel_fp32: bool = SINGLE_CHANNEL_FP32) -> bytes:
    """The fp32 ``graph`` quantised to int8 (uint8 activations, int8 weights: the pair onnxruntime's x86 kernels
    are fastest at), its activation ranges the min and max seen on ``calibration`` (N, 1, 28, 28);
    ``single_channel_fp32``: leave ``fp32_nodes`` as they are."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if quant_format not in FORMATS:
        raise ValueError(f"quantisation format must be one of {', '.join(FORMATS)}, not {quant_format!r}")

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[start:start + 256] for start in range(0, len(calibration), 256))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"image": batch}

    with tempfile.TemporaryDirectory(prefix="digitlab-int8-") as scratch:
        source, out = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        source.write_bytes(graph)
        if preprocess:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(source), str(Path(scratch) / "pre.onnx"))
            source = Path(scratch) / "pre.onnx"
        logging.disable(logging.WARNING)  # the quantiser's advice goes to the root logger; the choice was measured
        try:
            quantize_static(str(source), str(out), Batches(), per_channel=per_channel,
                            nodes_to_exclude=fp32_nodes(source.read_bytes()) if single_channel_fp32 else [],
                            quant_format=QuantFormat.QOperator if quant_format == "qoperator" else QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        quantised = onnx.load(str(out))
    # The checkpoint's metadata and the fp32 export's check travel on: the engine reads the model's description there.
    kept = {entry.key for entry in quantised.metadata_props}
    for entry in onnx.load_from_string(graph).metadata_props:
        if entry.key not in kept:
            quantised.metadata_props.add(key=entry.key, value=entry.value)
    return quantised.SerializeToString()


def accuracy(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """The fraction of ``images`` the ONNX model at ``path`` gives the right digit, run by the engine predict and
    serve use."""
    from digitlab.recognition.engine import OnnxEngine

    engine = OnnxEngine(path)
    logits = np.concatenate([engine.logits(images[start:start + batch_size])
                             for start in range(0, len(images), batch_size)])
    return float((logits.argmax(1) == labels).mean())


def quantise_checked(graph: bytes, meta: dict, *, tolerance: float = TOLERANCE_POINTS,
                     calibration_images: int = CALIBRATION_IMAGES, test_images: int = TEST_IMAGES,
                     data_dir: str | os.PathLike | None = None, calibration: np.ndarray | None = None,
                     **options) -> tuple[bytes, dict]:
    """(the int8 file's bytes, what its ``digitlab_int8`` metadata says) for the fp32 ``graph`` (an export with
    digitlab's metadata), or ``AccuracyLossError`` when int8 loses more than ``tolerance`` points of MNIST test
    accuracy. ``calibration``: the inputs to calibrate on instead of the MNIST training sample."""
    import onnx
    import onnxruntime

    from digitlab.training.data import load_mnist

    if calibration is None:
        calibration = calibration_inputs(meta, calibration_images, data_dir)
    quantised = quantise(graph, calibration, **options)
    settings = {"format": options.get("quant_format", FORMAT), "per_channel": options.get("per_channel", PER_CHANNEL),
                "preprocess": options.get("preprocess", PREPROCESS), "weights": "int8", "activations": "uint8",
                "fp32_nodes": fp32_nodes(graph) if options.get("single_channel_fp32", SINGLE_CHANNEL_FP32) else [],
                "calibration": "minmax", "calibration_images": len(calibration),
                "calibration_seed": CALIBRATION_SEED, "onnxruntime": onnxruntime.__version__}

    images, labels = load_mnist("test", data_dir)
    images, labels = normalised(images.numpy()[:test_images], meta), labels.numpy()[:test_images]
    with tempfile.TemporaryDirectory(prefix="digitlab-int8-") as scratch:
        fp32_path, int8_path = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        fp32_path.write_bytes(graph)
        int8_path.write_bytes(quantised)
        fp32, int8 = accuracy(fp32_path, images, labels), accuracy(int8_path, images, labels)
    loss = round((fp32 - int8) * 100, 4)  # in percentage points; rounded so 0.05 reads as 0.05
    if not loss <= tolerance:
        raise AccuracyLossError(f"the int8 model reads {int8:.2%} of {len(labels):,} MNIST test images right, the fp32 "
                                f"one {fp32:.2%}: {loss:.2f} points lost, more than the {tolerance:g} allowed "
                                f"(--int8-tolerance); nothing was written")
    record = {"fp32_accuracy": fp32, "int8_accuracy": int8, "accuracy_loss_points": loss,
              "tolerance_points": tolerance, "test_images": len(labels), **settings}
    proto = onnx.load_from_string(quantised)
    proto.metadata_props.add(key="digitlab_int8", value=json.dumps(record))
    proto.doc_string = f"{meta['arch']}, int8: (batch, 1, 28, 28) -> (batch, {len(meta['classes'])}) logits"
    return proto.SerializeToString(), record
