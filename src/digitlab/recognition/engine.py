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

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digitlab.errors import one_line
from digitlab.labels import metadata_from_json, normalisation_of


# The bundled model exported to ONNX, beside the bundled checkpoint (checkpoint.BUNDLED; not imported: it needs torch).
BUNDLED_ONNX = Path(__file__).parent.parent / "pretrained" / "digitnet.onnx"
# ... and quantised to int8 by `digitlab export --int8` (smaller and faster; its accuracy is in its metadata).
BUNDLED_INT8 = BUNDLED_ONNX.with_suffix(".int8.onnx")


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


BACKENDS = {"torch": TorchEngine, "onnx": OnnxEngine}


def torch_installed() -> bool:
    """Whether PyTorch can be imported, found without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def is_onnx(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).suffix.lower() == ".onnx"


def export_beside(checkpoint: str | os.PathLike | None, threads: int | None = None) -> OnnxEngine | None:
    """The ONNX export beside ``checkpoint`` (None: the bundled one), the ``.onnx`` with its stem, loaded, when it was
    exported from this very file; else None.

    ``digitlab export`` records the SHA-256 of the checkpoint it read in the ONNX metadata (``digitlab_export``), so
    a checkpoint trained again or calibrated after its export no longer matches, and an export of some other model
    put beside it never does: either would answer for a different model than the one named. An int8 export records
    the same checkpoint but answers only within a tolerance of it, so it is not taken for it either."""
    source = BUNDLED_ONNX.with_suffix(".safetensors") if checkpoint is None else Path(checkpoint)
    beside = source.with_suffix(".onnx")
    if is_onnx(source) or not beside.is_file() or not source.is_file():
        return None
    try:
        engine = OnnxEngine(beside, threads)
    except (ValueError, ImportError):  # not a digitlab export, or no onnxruntime: PyTorch runs the checkpoint
        return None
    props = engine.session.get_modelmeta().custom_metadata_map
    try:
        record = json.loads(props.get("digitlab_export", "{}"))
    except json.JSONDecodeError:
        return None
    if "digitlab_int8" in props:
        return None
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return engine if isinstance(record, dict) and record.get("source_sha256") == digest else None


def backend_for(path: str | os.PathLike | None, backend: str | None = None) -> str:
    """The backend asked for, else the fastest that gives the checkpoint's own answers: onnx for a ``.onnx`` file and
    for a checkpoint (None: the bundled one) with its export beside it (``export_beside``), else torch; onnx for the
    bundled model when PyTorch is not installed. The CLI and the server ask here; ``load_engine`` decides alike."""
    if backend is not None:
        return backend
    if is_onnx(path) or export_beside(path) is not None:
        return "onnx"
    return _without_export(path)


def _without_export(path: str | os.PathLike | None) -> str:
    """The backend for a model with no export of its own beside it."""
    return "onnx" if is_onnx(path) or (path is None and not torch_installed()) else "torch"


def bundled_int8(model: str | os.PathLike | None, backend: str | None) -> str:
    """``--int8`` of predict and serve: the bundled model's int8 export, which onnxruntime runs. Another model's int8
    export is a file like any other, given as the model itself."""
    if model is not None:
        raise ValueError(f"--int8 runs the bundled model's int8 export, not --model {model}; pass your own model's "
                         "(`digitlab export CKPT --onnx model.int8.onnx --int8`) as --model alone")
    if backend not in (None, "onnx"):
        raise ValueError(f"--int8 runs on onnxruntime, not --backend {backend}")
    if not BUNDLED_INT8.is_file():
        raise ValueError("this install has no bundled int8 model; make one with `digitlab export --onnx "
                         "model.int8.onnx --int8` and pass it as --model")
    return str(BUNDLED_INT8)


def load_engine(path: str | os.PathLike | None = None, backend: str | None = None, **options) -> Engine:
    """The model at ``path`` (None: the bundled one) behind the named backend (None: ``backend_for`` the file).

    Without a backend, and with onnx for a checkpoint, the checkpoint's own export beside it runs on onnxruntime:
    PyTorch is then never imported. Checked once here, not once to choose and again to load."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    if (backend is None and not is_onnx(path)) or (backend == "onnx" and path is not None and not is_onnx(path)):
        engine = export_beside(path, options.get("threads"))
        if engine is None and backend == "onnx":
            beside = Path(path).with_suffix(".onnx")
            found = f"{beside} is not an fp32 export of this very file" if beside.is_file() else \
                f"there is no {beside}"
            raise ValueError(f"{path}: the onnx backend runs .onnx files, and {found}; make one with "
                             f"`digitlab export {path} --onnx {beside}`")
    else:
        engine = None
    if engine is None:
        engine = BACKENDS[backend or _without_export(path)](path, **options)
    check_model(engine, "the bundled model" if path is None else str(path))
    return engine


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
