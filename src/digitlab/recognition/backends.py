"""Which runtime runs a model file, told from the files alone: choosing loads neither runtime, nor numpy.

    backend_for("model.onnx")              # "onnx"
    backend_for("model.safetensors")       # "onnx" when its own export sits beside it, else "torch"
    backend_for(None)                      # the bundled model: "onnx", its export ships beside it

A checkpoint's export runs in its place when ``digitlab export`` wrote it from this very file (``own_export``): the
export records the SHA-256 of the checkpoint it read (``digitlab_export`` in its metadata), so a checkpoint trained
again or calibrated after its export no longer matches, and an export of some other model put beside it never does.
An int8 export records the same checkpoint but answers only within a tolerance of it, so it is not taken for it.

That record is read from the ONNX file's protobuf fields directly (``onnx_metadata``), not by onnxruntime, which
imports numpy: the server's HTTP process settles its backend here and leaves loading to its worker processes
(tests/test_layout.py checks it). The whole file is checked where it is loaded (``engine.load_engine``), which
takes its choice from here too, so the command line and the server choose alike.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Iterator

BACKENDS = ("torch", "onnx")  # engine.ENGINES runs each
# The bundled checkpoint (PyTorch runs it: training.checkpoint.BUNDLED), and beside it its export to ONNX.
BUNDLED_CHECKPOINT = Path(__file__).parent.parent / "pretrained" / "digitnet.safetensors"
BUNDLED_ONNX = BUNDLED_CHECKPOINT.with_suffix(".onnx")
# ... and quantised to int8 by `digitlab export --int8` (smaller and faster; its accuracy is in its metadata).
BUNDLED_INT8 = BUNDLED_ONNX.with_suffix(".int8.onnx")
METADATA_PROPS = 14  # ModelProto.metadata_props in onnx.proto: repeated {key = 1, value = 2}


def backend_for(path: str | os.PathLike | None, backend: str | None = None) -> str:
    """The backend asked for, else the fastest that gives the checkpoint's own answers: onnx for a ``.onnx`` file and
    for a checkpoint (None: the bundled one) with its export beside it (``own_export``), else torch; onnx for the
    bundled model when PyTorch is not installed. The CLI and the server ask here; ``engine.load_engine`` decides
    alike."""
    if backend is not None:
        return backend
    if is_onnx(path) or own_export(path) is not None:
        return "onnx"
    return without_export(path)


def without_export(path: str | os.PathLike | None) -> str:
    """The backend for a model with no export of its own beside it."""
    return "onnx" if is_onnx(path) or (path is None and not torch_installed()) else "torch"


def own_export(checkpoint: str | os.PathLike | None) -> Path | None:
    """The ONNX export beside ``checkpoint`` (None: the bundled one), the ``.onnx`` with its stem, when it is an fp32
    export of this very file that onnxruntime (installed) can run; else None."""
    source = BUNDLED_CHECKPOINT if checkpoint is None else Path(checkpoint)
    beside = source.with_suffix(".onnx")
    if is_onnx(source) or not beside.is_file() or not source.is_file() or not _installed("onnxruntime"):
        return None
    props = onnx_metadata(beside)
    if props is None or "digitlab" not in props or "digitlab_int8" in props:  # not a digitlab export, or int8
        return None
    try:
        record = json.loads(props.get("digitlab_export", "{}"))
    except json.JSONDecodeError:
        return None
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return beside if isinstance(record, dict) and record.get("source_sha256") == digest else None


def is_onnx(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).suffix.lower() == ".onnx"


def torch_installed() -> bool:
    """Whether PyTorch can be imported, found without importing it."""
    return _installed("torch")


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


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


# --- an ONNX file's metadata, without onnxruntime -------------------------------------------------------------------

def onnx_metadata(path: str | os.PathLike) -> dict[str, str] | None:
    """The ``metadata_props`` of the ONNX model at ``path`` (key -> value, as onnxruntime's ``custom_metadata_map``
    gives them), read from the top-level fields of its protobuf; the graph is skipped, not parsed. None where the file
    cannot be read or is no protobuf message."""
    try:
        props = {}
        for number, wire, value in _fields(memoryview(Path(path).read_bytes())):
            if number == METADATA_PROPS and wire == 2:
                entry = {n: bytes(v).decode() for n, w, v in _fields(value) if w == 2}
                props[entry.get(1, "")] = entry.get(2, "")
        return props
    except (OSError, ValueError):  # a bad varint, a field past the end, text that is not UTF-8
        return None


def _fields(data: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """The fields of one protobuf message in its wire format: (number, wire type, value), the value an int for a
    varint and the field's bytes otherwise. ValueError where the message is cut short or malformed."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire in (1, 2, 5):  # 64-bit, length-delimited, 32-bit
            size, position = (8, position) if wire == 1 else (4, position) if wire == 5 else _varint(data, position)
            if position + size > len(data):
                raise ValueError("a protobuf field runs past the end of its message")
            value, position = data[position:position + size], position + size
        else:  # groups: deprecated, and never in an ONNX file
            raise ValueError(f"protobuf wire type {wire}")
        yield number, wire, value


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    """The base-128 number at ``position``, and the position after it."""
    value = shift = 0
    while shift < 64:
        if position >= len(data):
            raise ValueError("a protobuf number runs past the end of its message")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    raise ValueError("a protobuf number longer than 64 bits")
