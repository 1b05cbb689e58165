"""A checkpoint -> an ONNX file that onnxruntime runs without PyTorch, checked against PyTorch before it is written.

    digitlab export runs/cnn5x5_dense1000/model.safetensors --onnx model.onnx

The graph takes ``image`` (batch, 1, 28, 28) float32, normalised as the checkpoint's metadata says, and gives
``logits`` (batch, classes), one per name in the metadata's ``classes``; the batch axis is dynamic. The checkpoint's
metadata is embedded as JSON under the ONNX metadata key ``digitlab`` (and how the export was checked under
``digitlab_export``), so the file describes itself as the checkpoint does and ``engine.OnnxEngine`` needs nothing
else.

Before anything is written, real MNIST test images go through both PyTorch and onnxruntime, in one large batch
and one at a time (the dynamic axis at both ends); if any logit differs by more than ``tolerance`` the export
fails and no file appears. The file is written atomically.

With ``int8=True`` the checked graph is then quantised to int8 (``quantise.py``), and written only when it reads the
MNIST test set within ``int8_tolerance`` points of the fp32 graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from digitlab.errors import one_line
from digitlab.files import atomic_write
from digitlab.training import checkpoint

OPSET = 20
TOLERANCE = 1e-4
CHECK_IMAGES = 2000


class ExportError(Exception):
    """The exported graph does not compute what the PyTorch model computes (or could not be built at all)."""


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: float       # largest |logit difference| between PyTorch and onnxruntime on the checked images
    images_checked: int
    agreement: float          # fraction of checked images where both pick the same class
    size_bytes: int
    int8: dict | None = None  # the int8 file's ``digitlab_int8`` metadata: accuracies, their difference, calibration


def to_onnx(model: torch.nn.Module, opset: int = OPSET) -> bytes:
    """The model as a serialised ONNX graph with a dynamic batch axis (torch.export based exporter)."""
    example = torch.zeros(2, 1, 28, 28)
    # The exporter logs that torchvision's operators are missing; digitlab's networks use none of them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about its own internals mean nothing to a user
        program = torch.onnx.export(model.eval(), (example,), input_names=["image"], output_names=["logits"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                                    dynamo=True, optimize=True, verbose=False)
    return program.model_proto.SerializeToString()


def check_against_torch(model: torch.nn.Module, onnx_bytes: bytes, images: np.ndarray) -> tuple[float, float]:
    """(max |logit difference|, class agreement) of onnxruntime vs PyTorch on ``images`` (N, 1, 28, 28) float32."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    batched = session.run(None, {"image": images})[0]
    singles = np.concatenate([session.run(None, {"image": images[i:i + 1]})[0] for i in range(min(32, len(images)))])
    diff = max(float(np.abs(batched - expected).max()), float(np.abs(singles - expected[:len(singles)]).max()))
    agreement = float((batched.argmax(1) == expected.argmax(1)).mean())
    return diff, agreement


def mnist_test_inputs(meta: dict, count: int, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The first ``count`` MNIST test images, normalised as the checkpoint's metadata says: (N, 1, 28, 28)."""
    from digitlab.recognition.engine import normalise
    from digitlab.training.data import DataConfig, load_mnist

    images, _ = load_mnist("test", data_dir)
    data = DataConfig.from_metadata(meta)
    return normalise(images[:count].numpy() / 255.0, data.mean, data.std)


def refuse_to_replace(out_path: str | os.PathLike, overwrite: bool) -> None:
    """The one check that an ONNX file a user has is not replaced unasked: ``export_onnx`` makes it, and a caller
    that exports after long work (``finetune``) makes it first too, before the work."""
    if Path(out_path).exists() and not overwrite:
        raise ValueError(f"{out_path} already exists: pass --overwrite to replace it, or choose another file")


def export_onnx(checkpoint_path: str | os.PathLike | None, out_path: str | os.PathLike, *,
                tolerance: float = TOLERANCE, check_images: int = CHECK_IMAGES, opset: int = OPSET,
                data_dir: str | os.PathLike | None = None, overwrite: bool = False, int8: bool = False,
                int8_tolerance: float | None = None, calibration_images: int | None = None) -> ExportReport:
    """Export a checkpoint (None: the bundled model) to ``out_path``, verified against PyTorch first. A file
    already at ``out_path`` is someone's model: it is replaced only when ``overwrite`` says so.

    ``int8``: write the graph quantised to int8 instead, refused (``quantise.AccuracyLossError``) when it loses more
    than ``int8_tolerance`` points of MNIST test accuracy (None: ``quantise``'s defaults, as for the calibration)."""
    import onnx

    # A mistyped folder should not quietly become a new tree of folders, nor an earlier export vanish: refuse before
    # any work.
    folder = Path(out_path).parent
    if not folder.is_dir():
        raise ValueError(f"{out_path}: the folder {folder} does not exist (export creates no folders; make it first)")
    refuse_to_replace(out_path, overwrite)
    source = checkpoint.BUNDLED if checkpoint_path is None else Path(checkpoint_path)
    model, meta = checkpoint.load(source)
    try:
        graph = to_onnx(model, opset)
    except Exception as exc:  # the exporter fails in many ways; say which network and why, in one line
        raise ExportError(f"could not export {meta['arch']} to ONNX: {one_line(exc)}") from None

    images = mnist_test_inputs(meta, check_images, data_dir)
    diff, agreement = check_against_torch(model, graph, images)
    if not diff <= tolerance:  # also catches NaN
        raise ExportError(f"onnxruntime differs from PyTorch by up to {diff:.3g} in the logits of {len(images)} "
                          f"MNIST test images (tolerance {tolerance:g}); nothing was written")

    proto = onnx.load_from_string(graph)
    check = {"source": source.name, "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
             "max_abs_diff": diff, "tolerance": tolerance, "images_checked": len(images),
             "class_agreement": agreement, "opset": opset, "torch": torch.__version__,
             "onnx": onnx.__version__}
    for key, value in (("digitlab", meta), ("digitlab_export", check)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    proto.producer_name = "digitlab"
    proto.doc_string = f"{meta['arch']}: (batch, 1, 28, 28) -> (batch, {len(meta['classes'])}) logits"
    data, int8_record = proto.SerializeToString(), None
    if int8:
        from digitlab.training import quantise

        data, int8_record = quantise.quantise_checked(
            data, meta, data_dir=data_dir,
            tolerance=quantise.TOLERANCE_POINTS if int8_tolerance is None else int8_tolerance,
            calibration_images=quantise.CALIBRATION_IMAGES if calibration_images is None else calibration_images)
    atomic_write(out_path, lambda tmp: Path(tmp).write_bytes(data))
    return ExportReport(Path(out_path), diff, len(images), agreement, len(data), int8_record)
