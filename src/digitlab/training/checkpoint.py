"""Self-describing checkpoints: safetensors weights plus JSON metadata that rebuilds the model on its own.

A file holds the network's tensors and, in the safetensors header, one JSON document under the key ``digitlab``:
the network name and arguments, the input normalisation, the training config, metrics, package versions and the
data checksums. ``load(path)`` needs nothing else. safetensors never runs code when a file is read, so a
checkpoint from a stranger is safe to open; there is no pickle anywhere.

    save("run/model.safetensors", model, {"metrics": {...}})
    model, meta = load("run/model.safetensors")
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from digitlab.errors import CheckpointError, one_line
from digitlab.files import atomic_write
from digitlab.labels import metadata_from_json
from digitlab.recognition.backends import BUNDLED_CHECKPOINT
from digitlab.training.data import DataConfig, attach_data_config, data_config_of
from digitlab.training.models import create_model

FORMAT = "digitlab-checkpoint/1"
BUNDLED = BUNDLED_CHECKPOINT  # the model the package ships (recognition.backends names its files)
MAX_PARAMETERS = 50_000_000   # far above any digit network here (the largest has a few million); a file that asks
                              # for more is refused before a byte is allocated


def versions() -> dict[str, str]:
    import numpy
    import safetensors

    from digitlab import __version__

    return {"digitlab": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def base_metadata(model: nn.Module) -> dict[str, Any]:
    """What every checkpoint says about itself; callers add config, metrics and the like.

    The normalisation and class names come from the data configuration the model carries (``data.DataConfig``).
    """
    from digitlab.datasets.mnist import checksums

    data = data_config_of(model).metadata()
    return {
        "format": FORMAT,
        "arch": model.arch_name,
        "arch_kwargs": model.arch_kwargs,
        "normalisation": data["normalisation"],
        "input": {"shape": [1, 28, 28], "form": "MNIST: bright ink on dark, digit fitted in 20x20, centred by mass"},
        "classes": data["classes"],
        "versions": versions(),
        "data_md5": checksums(),
    }


def save(path: str | os.PathLike, model: nn.Module, metadata: dict[str, Any] | None = None,
         extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model``'s weights and metadata atomically. ``extra_tensors`` (e.g. optimizer state) ride along."""
    meta = base_metadata(model) | (metadata or {})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for key, value in (extra_tensors or {}).items():
        tensors[key] = value.detach().to("cpu").contiguous()
    meta["weights_sha256"] = weights_digest(tensors)
    header = {"digitlab": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, type, shape and bytes, in name order: written into the metadata, checked on
    loading, so a flipped byte in the weights (which safetensors loads without a murmur) is caught."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{str(tensor.dtype)}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All tensors and the metadata of a checkpoint file, with clear errors for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path}: an ONNX export, not a .safetensors checkpoint: this needs the checkpoint it "
                              f"was exported from (`digitlab predict` and `digitlab serve` run .onnx files)")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if "digitlab" not in header:
        raise CheckpointError(f"{path}: a safetensors file, but not a digitlab checkpoint (no metadata)")
    try:
        meta = metadata_from_json(header["digitlab"], str(path))
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {one_line(repr(meta.get('format')), 60)}")
    expected = meta.get("weights_sha256")  # files written before it was recorded have none
    if expected is not None and weights_digest(tensors) != expected:
        raise CheckpointError(f"{path}: the weights do not match the checksum recorded with them: the file is damaged "
                              f"(copy it again, or retrain)")
    try:  # older files name the digits by number: read as the names ("0" ... "9") every reader expects
        meta |= DataConfig.from_metadata(meta).metadata()
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return tensors, meta


def build(meta: dict[str, Any], tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Rebuild the named network, load the weights that belong to it (keys outside the model are ignored) and give
    it the metadata's data configuration, whose class list must be as long as the network's output."""
    arch, kwargs = meta.get("arch"), meta.get("arch_kwargs", {})
    if not isinstance(arch, str) or not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: metadata 'arch' must be a network name and 'arch_kwargs' an object, not "
                              f"{one_line(repr(arch), 60)} and {one_line(repr(kwargs), 60)}")
    # Built first on the meta device, which allocates nothing: a file's arguments are a stranger's, and may ask for
    # a layer of a million channels (terabytes) or a negative one.
    try:
        with torch.device("meta"):
            shape_only = create_model(arch, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any network's constructor, any argument: one line naming the file
        raise CheckpointError(f"{source}: cannot rebuild the network {one_line(arch, 60)!r} from its metadata "
                              f"({one_line(exc, 160)})") from None
    size = sum(p.numel() for p in shape_only.parameters()) + sum(b.numel() for b in shape_only.buffers())
    if size > MAX_PARAMETERS:
        raise CheckpointError(f"{source}: the network its metadata describes has {size:,} values, over the limit of "
                              f"{MAX_PARAMETERS:,} (a broken or hostile file?)")
    try:
        model = create_model(arch, **kwargs)
    except Exception as exc:  # noqa: BLE001 - as above
        raise CheckpointError(f"{source}: cannot rebuild the network ({one_line(exc, 160)})") from None
    expected = model.state_dict()
    weights = {k: v for k, v in tensors.items() if k in expected}
    missing = sorted(set(expected) - set(weights))
    wrong = [k for k in weights if weights[k].shape != expected[k].shape]
    if missing or wrong:
        detail = (f"missing {missing[:3]}" if missing else
                  f"shape of {wrong[0]} is {tuple(weights[wrong[0]].shape)}, network wants "
                  f"{tuple(expected[wrong[0]].shape)}")
        raise CheckpointError(f"{source}: weights do not fit network {meta['arch']!r} ({detail})")
    for key, value in weights.items():  # a trained network's parameters and statistics are finite floats
        if expected[key].is_floating_point() and not value.is_floating_point():
            raise CheckpointError(f"{source}: weight {key} holds {str(value.dtype).removeprefix('torch.')} values, "
                                  f"not floating-point numbers: the file is broken")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: weight {key} holds NaN or infinite values: the file is broken (a "
                                  f"training run that diverged, or damaged bytes)")
    model.load_state_dict(weights)
    try:
        attach_data_config(model, DataConfig.from_metadata(meta))
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    return model.eval()


def load(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from its file alone (the bundled pretrained model when ``path`` is None), in eval mode.

    The model carries its data configuration (``model.data_config``: normalisation and class names). Its
    convolution weights are laid out channels-last, as in training, because oneDNN's CPU convolutions run best that
    way (measured: docs/serving.md, 'The model alone'); the inputs may come in either layout.
    """
    path = BUNDLED if path is None else Path(path)
    tensors, meta = read(path)
    return build(meta, tensors, str(path)).to(device=device, memory_format=torch.channels_last), meta


def update_metadata(path: str | os.PathLike, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge ``changes`` into a checkpoint's metadata, rewriting the file atomically; the weights are untouched."""
    tensors, meta = read(path)
    # read() has checked a recorded digest against these very tensors; a file from before digests gets one
    meta = meta | changes | {"weights_sha256": meta.get("weights_sha256") or weights_digest(tensors)}
    header = {"digitlab": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return meta
