"""The optimiser a run steps: PyTorch's Adam, AdamW or SGD, made and stepped without importing ``torch._dynamo``.

``torch.optim.Optimizer`` wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` in
``torch._disable_dynamo``, and each optimiser's ``step`` in ``_use_grad_for_differentiable``; both import
``torch._dynamo`` on their first call, so that ``torch.compile`` can trace around them. An eager run never needs it,
yet pays for the import, about as long as ``import torch`` itself (docs/results.md, 'Time to accuracy'). The classes here are PyTorch's own, with those methods taken
from under their wrappers (``__wrapped__``, which ``functools.wraps`` keeps): the same code, the same kernels, the
same state dicts, and torch's learning-rate schedulers accept them as the optimisers they are. A compiled run
(``torch.compile``) imports ``torch._dynamo`` itself and traces these as it would the originals.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer

from digitlab.training.config import TrainConfig

FUSED_DEVICES = ("cpu", "cuda")


def _eager(base: type[Optimizer]) -> type[Optimizer]:
    """``base`` with its dynamo-importing wrappers taken off."""
    base_step = base.step.__wrapped__

    def step(self, closure=None):
        # what the wrapper does besides importing torch._dynamo: the update runs without recording gradients
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return base_step(self, closure)

    members = {name: getattr(Optimizer, name).__wrapped__
               for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict")}
    return type(base.__name__, (base,), members | {"step": step, "__doc__": base.__doc__,
                                                   "__module__": __name__, "__qualname__": base.__name__})


EAGER = {"adam": _eager(Adam), "adamw": _eager(AdamW), "sgd": _eager(SGD)}


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> Optimizer:
    """The run's optimiser. Adam and AdamW update every tensor in one fused kernel where PyTorch has one: the
    per-tensor loop costs more than the update itself for a network of large dense layers (docs/results.md,
    'Beside Keras')."""
    params = list(model.parameters())
    if cfg.optimizer in ("adam", "adamw"):
        fused = all(p.device.type in FUSED_DEVICES for p in params) or None
        return EAGER[cfg.optimizer](params, lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2),
                                    weight_decay=cfg.weight_decay, fused=fused)
    return EAGER["sgd"](params, lr=cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                        weight_decay=cfg.weight_decay)
