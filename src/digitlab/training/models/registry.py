"""The network registry: a dict from name to builder, filled by ``@register_model`` where each network is defined.

CLI, API and checkpoints name networks by string; ``create_model(name, **kwargs)`` is the one way to build one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    summary: str  # one line for `digitlab models`


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name; the first line of its docstring is its one-line summary."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"network {fn.__name__!r} is registered twice")
    summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    _REGISTRY[fn.__name__] = ModelEntry(fn.__name__, fn, summary)
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown network {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered network. The module remembers its name and arguments so a checkpoint can rebuild it."""
    try:
        model = get_entry(name).builder(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for network {name!r}: {exc}") from None
    model.arch_name = name
    model.arch_kwargs = dict(kwargs)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
