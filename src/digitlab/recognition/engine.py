"""Run a model behind one call: normalised (N, 1, 28, 28) float32 in, (N, classes) logits out, as numpy arrays.

The recogniser, the CLI and the web server talk to an engine, never to a framework, so a deployment can swap
PyTorch for another runtime without touching them. An engine is anything with ``metadata`` (the checkpoint's,
including ``normalisation``) and ``logits(batch)``; ``load_engine`` picks one by backend name.

    engine = load_engine("runs/cnn5x5_dense1000/model.safetensors")       # or None: the bundled model
    engine = load_engine("model.onnx")                                    # onnxruntime, chosen by the file
    engine = load_engine("model.safetensors", backend="torch")            # PyTorch, even with an export beside it
    batch = normalise(images, *normalisation_of(engine.metadata))     # (N, 28, 28) in [0, 1] -> (N, 1, 28, 28)
    logits = engine.logits(batch)                      # (N, 10) float32, or (N, 11) with "not a digit"
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digitlab.errors import one_line
from digitlab.labels import metadata_from_json, normalisation_of
from digitlab.recognition.backends import BACKENDS, BUNDLED_ONNX, is_onnx, own_export, without_export


class Engine(Protocol):
    metadata: dict[str, Any]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, 28, 28) float32, normalised as ``metadata["normalisation"]`` says -> (N, classes) float32."""
        ...


def normalise(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N, 28, 28) images in [0, 1] -> (N, 1, 28, 28) float32 standardised as the model was trained: an engine's
    input. ``mean`` and ``std``: the model's own, from its metadata (``labels.normalisation_of``)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    return ((images - mean) / std)[:, None].astype(np.float32)


def check_batch(batch: np.ndarray) -> np.ndarray:
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1:] != (1, 28, 28):
        raise ValueError(f"a batch must have shape (N, 1, 28, 28), not {batch.shape}")
    return batch


def no_logits(metadata: dict[str, Any]) -> np.ndarray:
    """The answer to an empty batch: (0, classes), as wide as the model's output."""
    return np.zeros((0, len(metadata.get("classes", range(10)))), np.float32)


class TorchEngine:
    """A digitlab checkpoint run by PyTorch (imported here, not at module level: the one door from this floor to the
    training floor, opened only when a user asks for the torch backend; tests/test_layout.py names it)."""

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu", threads: int | None = None):
        """``threads``: PyTorch's thread count, which is process-wide: only for a process that runs this model
        alone (a ``--jobs`` worker); None leaves it as it is."""
        try:
            from digitlab.training import checkpoint
        except ModuleNotFoundError as exc:  # the CLI turns this into one line naming the extra
            raise ModuleNotFoundError("running a .safetensors checkpoint needs PyTorch: pip install "
                                      "'digitlab[train]' (or export it to ONNX and use the onnx backend)",
                                      name=exc.name) from None

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.model, self.metadata = checkpoint.load(path, device)
        self.device = device

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = check_batch(batch)
        if len(batch) == 0:
            return no_logits(self.metadata)
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


class OnnxEngine:
    """A model exported by ``digitlab export`` run by onnxruntime: no PyTorch anywhere, for a lighter deployment.

    The checkpoint's metadata travels inside the .onnx file (``metadata_props["digitlab"]``), so the file describes
    itself as the checkpoint did. One session serves many threads at once; onnxruntime's ``run`` is thread-safe.
    """

    def __init__(self, path: str | os.PathLike | None = None, threads: int | None = None):
        import onnxruntime

        path = BUNDLED_ONNX if path is None else Path(path)
        if path.suffix == ".safetensors":
            raise ValueError(f"{path}: the onnx backend runs .onnx files; make one with "
                             f"`digitlab export {path} --onnx model.onnx`")
        if not path.is_file():
            raise ValueError(f"{path}: no such ONNX model file")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle pool threads would otherwise spin, waiting for work: CPU taken from the rest of a shared machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: a broken file is told in one line (check_model), not its warnings
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for every kind of bad file
            raise ValueError(f"{path}: not a readable ONNX model ({one_line(exc)})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if "digitlab" not in props:
            raise ValueError(f"{path}: an ONNX model, but not one written by `digitlab export` (no metadata)")
        self.metadata = metadata_from_json(props["digitlab"], str(path))
        normalisation_of(self.metadata, str(path))
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch)
        if len(batch) == 0:
            return no_logits(self.metadata)
        return self.session.run(None, {self.input_name: batch})[0]


ENGINES = {"torch": TorchEngine, "onnx": OnnxEngine}  # by backends.BACKENDS' names


def load_engine(path: str | os.PathLike | None = None, backend: str | None = None, **options) -> Engine:
    """The model at ``path`` (None: the bundled one) behind the named backend (None: ``backends.backend_for`` the
    file).

    Without a backend, and with onnx for a checkpoint, the checkpoint's own export beside it
    (``backends.own_export``) runs on onnxruntime: PyTorch is then never imported. An export that onnxruntime cannot
    load is not the checkpoint's either."""
    if backend is not None and backend not in ENGINES:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    if (backend is None and not is_onnx(path)) or (backend == "onnx" and path is not None and not is_onnx(path)):
        engine = _load_export(own_export(path), options.get("threads"))
        if engine is None and backend == "onnx":
            beside = Path(path).with_suffix(".onnx")
            found = f"{beside} is not an fp32 export of this very file" if beside.is_file() else \
                f"there is no {beside}"
            raise ValueError(f"{path}: the onnx backend runs .onnx files, and {found}; make one with "
                             f"`digitlab export {path} --onnx {beside}`")
    else:
        engine = None
    if engine is None:
        engine = ENGINES[backend or without_export(path)](path, **options)
    check_model(engine, "the bundled model" if path is None else str(path))
    return engine


def _load_export(path: Path | None, threads: int | None) -> OnnxEngine | None:
    try:
        return None if path is None else OnnxEngine(path, threads)
    except (ValueError, ImportError):  # not loadable after all: PyTorch runs the checkpoint
        return None


def check_model(engine: Engine, source: str) -> None:
    """Run a few made-up digits through ``engine`` once, when it is loaded: ValueError naming ``source`` unless the
    model takes a batch of (N, 1, 28, 28) and answers (N, classes) finite numbers, one per class its metadata names.

    A file can be well formed and still broken: a NaN or a huge weight, a negative batch-norm variance, an export
    with its input fixed at another size or an extra output first, a class list that does not match the outputs.
    Found here, it is one line when the CLI or the server starts, not a wrong or unreadable answer to every image.
    """
    classes = engine.metadata.get("classes")
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(f"{source}: the model's metadata has no class list (metadata['classes']): it cannot say "
                         f"which output is which digit")
    mean, std = normalisation_of(engine.metadata, source)
    probes = np.zeros((3, 1, 28, 28), np.float32)  # blank paper; a stroke like a 1; a ring like a 0
    probes[1, 0, 4:24, 13:16] = 1.0
    rows, cols = np.ogrid[:28, :28]
    probes[2, 0] = (np.abs(np.hypot(rows - 14, cols - 14) - 7) < 1.5).astype(np.float32)
    try:
        logits = np.asarray(engine.logits((probes - mean) / std))
    except Exception as exc:  # noqa: BLE001 - each runtime has its own errors for an input the model cannot take
        raise ValueError(f"{source}: not a model that reads a batch of 28x28 digits, shape (N, 1, 28, 28): "
                         f"{one_line(exc, 160)}") from None
    if logits.shape != (len(probes), len(classes)):
        raise ValueError(f"{source}: the model answers {len(probes)} images with outputs of shape {logits.shape}, "
                         f"not ({len(probes)}, {len(classes)}): one output for each of the {len(classes)} classes "
                         f"its metadata names")
    if not np.issubdtype(logits.dtype, np.number) or not np.isfinite(logits).all():
        raise ValueError(f"{source}: the model's outputs are not all finite numbers (NaN or infinity): its weights "
                         f"are broken (a training run that diverged, or damaged bytes)")
