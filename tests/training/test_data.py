"""MNIST as tensors, the seeded validation split and the normalised input (the files themselves:
tests/datasets/test_mnist.py)."""

import pytest
import torch

from digitlab.training.config import TrainConfig
from digitlab.training.data import split_validation, to_input


def test_test_split_loads_as_uint8_tensors(test_split):
    images, labels = test_split
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist()[:3] == [980, 1135, 1032]  # MNIST's known class counts
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_validation_split_is_seeded_and_disjoint(test_split):
    images, labels = test_split
    train_a, val_a = split_validation(images, labels, 0.2, seed=3)
    train_b, val_b = split_validation(images, labels, 0.2, seed=3)
    _, val_c = split_validation(images, labels, 0.2, seed=4)
    assert len(val_a) == 2000 and len(train_a) == 8000
    assert torch.equal(val_a.labels, val_b.labels) and torch.equal(val_a.images, val_b.images)
    assert not torch.equal(val_a.images, val_c.images)
    assert split_validation(images, labels, 0.0)[1] is None
    with pytest.raises(ValueError):
        split_validation(images, labels, 1.0)


def test_to_input_normalises(test_split):
    x = to_input(test_split[0][:100], TrainConfig().data_config())
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.2
