"""The optimisers a run steps: PyTorch's own, made and stepped without importing torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from digitlab.training.config import TrainConfig
from digitlab.training.optimisers import make_optimizer


def run(make, schedule=True):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(),
                                torch.nn.Linear(12, 3))
    optimizer = make(model)
    rates = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=12) if schedule else None
    for _ in range(12):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(16, 6)), torch.randint(0, 3, (16,)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if rates:
            rates.step()
    return model, optimizer


@pytest.mark.parametrize("name, torch_class, schedule", [("adamw", torch.optim.AdamW, True),
                                                         ("adam", torch.optim.Adam, True),
                                                         ("sgd", torch.optim.SGD, False)])
def test_the_same_steps_as_torch_optim(name, torch_class, schedule):
    cfg = TrainConfig(optimizer=name, learning_rate=0.05, weight_decay=0.01, adam_beta2=0.9)
    ours, ours_optimizer = run(lambda model: make_optimizer(cfg, model), schedule)
    kwargs = dict(lr=0.05, weight_decay=0.01)
    kwargs |= dict(betas=(0.9, 0.9), fused=True) if name != "sgd" else dict(momentum=0.9, nesterov=True)
    theirs, theirs_optimizer = run(lambda model: torch_class(model.parameters(), **kwargs), schedule)
    assert isinstance(ours_optimizer, torch_class)  # torch's schedulers take it as what it is
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)  # bit for bit: the same update code and kernels
    mine, yours = ours_optimizer.state_dict(), theirs_optimizer.state_dict()
    assert mine["param_groups"] == yours["param_groups"]
    for index, state in mine["state"].items():
        assert all(torch.equal(value, yours["state"][index][key]) for key, value in state.items())
    # and a state dict goes back in: resuming a run
    again, again_optimizer = run(lambda model: make_optimizer(cfg, model), schedule)
    again_optimizer.load_state_dict(mine)
    assert again_optimizer.state_dict()["param_groups"] == mine["param_groups"]


def test_an_eager_run_never_imports_dynamo():
    # in a fresh process: whether torch._dynamo is imported is a property of the whole process
    code = ("import sys, torch\n"
            "from digitlab.training.config import TrainConfig\n"
            "from digitlab.training.optimisers import make_optimizer\n"
            "model = torch.nn.Linear(4, 2)\n"
            "for name in ('adam', 'adamw', 'sgd'):\n"
            "    optimizer = make_optimizer(TrainConfig(optimizer=name), model)\n"
            "    rates = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=4)\n"
            "    model(torch.randn(3, 4)).sum().backward()\n"
            "    optimizer.step(); rates.step(); optimizer.zero_grad()\n"
            "    optimizer.load_state_dict(optimizer.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
