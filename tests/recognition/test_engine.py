"""engine: a checkpoint behind one numpy call."""

import numpy as np
import pytest

from digitlab.training.checkpoint import CheckpointError
from digitlab.recognition.engine import TorchEngine, load_engine


def test_torch_engine_gives_logits_like_the_model(small_model_path, test_split):
    import torch

    from digitlab.training import checkpoint
    from digitlab.training.data import DataConfig, to_input

    engine = load_engine(small_model_path)
    assert isinstance(engine, TorchEngine) and engine.metadata["arch"] == "conv3_dense64"
    x = to_input(test_split[0][:5], DataConfig.from_metadata(engine.metadata))
    model, _ = checkpoint.load(small_model_path)
    with torch.no_grad():
        expected = model(x).numpy()
    logits = engine.logits(x.numpy())
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    assert np.allclose(logits, expected, atol=1e-5)
    assert engine.logits(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)


def test_bad_batch_shape_and_backend(small_model_path):
    engine = load_engine(small_model_path)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        engine.logits(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="unknown backend"):
        load_engine(small_model_path, backend="tensorflow")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_engine("missing.safetensors")


def test_the_bundled_engine_has_an_eleventh_output_even_for_an_empty_batch():
    engine = load_engine()
    assert engine.metadata["classes"][-1] == "not a digit"
    assert engine.logits(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 11)
    assert engine.logits(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 11)
