import json

import pytest
import torch
from safetensors.torch import save_file

from digitlab.training import checkpoint
from digitlab.training.checkpoint import CheckpointError
from digitlab.training.config import TrainConfig
from digitlab.training.data import attach_data_config
from digitlab.training.models import create_model


def described(name: str, not_a_digit: float = 0.0, **kwargs) -> torch.nn.Module:
    """A fresh network with the data configuration a run of it would give it."""
    cfg = TrainConfig(model=name, model_kwargs=kwargs, not_a_digit=not_a_digit)
    return attach_data_config(create_model(name, **kwargs), cfg.data_config())


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = described("conv3_dense64").eval()
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, model, {"metrics": {"test_accuracy": 0.5}, "config": {"epochs": 1}})
    return model, path


def test_round_trip_rebuilds_the_same_function(saved):
    model, path = saved
    loaded, meta = checkpoint.load(path)
    x = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert not loaded.training
    assert meta["arch"] == "conv3_dense64" and meta["metrics"]["test_accuracy"] == 0.5
    assert meta["normalisation"] == {"mean": 0.1307, "std": 0.3081}
    assert set(meta["versions"]) >= {"torch", "digitlab", "safetensors"}
    assert len(meta["data_md5"]) == 4


def test_file_is_plain_safetensors_not_pickle(saved):
    _, path = saved
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert "digitlab" in header["__metadata__"]
    assert b"\x80\x04" not in raw[:2]  # no pickle protocol marker at the start


def test_truncated_file_is_refused(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        checkpoint.load(path)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "none.safetensors")


def test_safetensors_without_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a digitlab checkpoint"):
        checkpoint.load(path)


def test_weights_that_do_not_fit_the_named_network(tmp_path):
    model = described("mlp_3x256")
    path = tmp_path / "lie.safetensors"
    checkpoint.save(path, model)
    tensors, meta = checkpoint.read(path)
    meta["arch"] = "conv3_dense64"
    save_file(tensors, str(path), metadata={"digitlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not fit network 'conv3_dense64'"):
        checkpoint.load(path)


def test_save_is_atomic_on_failure(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken)
    with pytest.raises(OSError):
        checkpoint.save(path, model)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_saved_files_get_ordinary_permissions(saved):
    import os

    _, path = saved
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def rewrite_metadata(path, **changes):
    """Change a checkpoint's metadata behind checkpoint.save's back, as an older or a hostile file would have it."""
    tensors, meta = checkpoint.read(path)
    save_file(tensors, str(path), metadata={"digitlab": json.dumps(meta | changes)})


def test_the_class_list_must_match_the_network_output(saved):
    _, path = saved
    rewrite_metadata(path, classes=[str(d) for d in range(10)] + ["not a digit"])  # the network has 10 outputs
    with pytest.raises(CheckpointError, match="10 outputs, but the class list has 11 names"):
        checkpoint.load(path)


def test_the_model_carries_its_data_config_from_the_file(saved):
    _, path = saved
    rewrite_metadata(path, normalisation={"mean": 0.5, "std": 0.25})
    model, meta = checkpoint.load(path)
    assert (model.data_config.mean, model.data_config.std) == (0.5, 0.25)
    assert model.data_config.classes == tuple(meta["classes"]) == tuple(str(d) for d in range(10))


def test_older_files_with_numbered_digits_still_load(tmp_path):
    model = described("digitnet", classes=11, not_a_digit=0.1).eval()
    path = tmp_path / "old.safetensors"
    checkpoint.save(path, model)
    rewrite_metadata(path, classes=list(range(10)) + ["not a digit"])
    loaded, meta = checkpoint.load(path)
    assert meta["classes"] == [str(d) for d in range(10)] + ["not a digit"]
    assert loaded.data_config.classes == tuple(meta["classes"])


@pytest.mark.parametrize("bad", [{"classes": 5}, {"classes": []}, {"normalisation": {"mean": 0.1}},
                                 {"normalisation": {"mean": 0.1, "std": 0}}])
def test_malformed_data_config_is_a_checkpoint_error(saved, bad):
    _, path = saved
    rewrite_metadata(path, **bad)
    with pytest.raises(CheckpointError, match="metadata '(classes|normalisation)'"):
        checkpoint.load(path)


def test_a_model_without_a_data_config_is_not_saved(tmp_path):
    with pytest.raises(ValueError, match="no data configuration"):
        checkpoint.save(tmp_path / "m.safetensors", create_model("mlp_3x256"))
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_are_refused(saved):
    model, path = saved
    tensors, meta = checkpoint.read(path)
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    meta["weights_sha256"] = checkpoint.weights_digest(tensors)  # as a run that diverged would have saved them
    save_file(tensors, str(path), metadata={"digitlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"weight {key} holds NaN or infinite values"):
        checkpoint.load(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_weights_that_are_not_floats_are_refused(saved, dtype):
    _, path = saved
    tensors, meta = checkpoint.read(path)
    tensors = {k: v.to(dtype) for k, v in tensors.items()}
    meta["weights_sha256"] = checkpoint.weights_digest(tensors)  # a hostile file can carry a matching checksum
    save_file(tensors, str(path), metadata={"digitlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="not floating-point numbers"):
        checkpoint.load(path)


@pytest.mark.parametrize("norm", [{"mean": 0.1, "std": -1.0}, {"mean": 0.1, "std": float("nan")},
                                  {"mean": float("inf"), "std": 0.3}, {"mean": 0.1, "std": float("inf")}])
def test_a_broken_normalisation_is_refused(saved, norm):
    _, path = saved
    rewrite_metadata(path, normalisation=norm)
    with pytest.raises(CheckpointError, match="finite and std positive"):
        checkpoint.load(path)


@pytest.mark.parametrize("changes, words", [
    ({"arch_kwargs": "abc"}, "must be a network name and 'arch_kwargs' an object"),
    ({"arch": ["conv3_dense64"]}, "must be a network name"),
    ({"arch": "no_such_net"}, "cannot rebuild the network"),
    ({"arch": "digitnet", "arch_kwargs": {"widths": [-1, 32, 96]}}, "cannot rebuild the network"),
    ({"arch": "digitnet", "arch_kwargs": {"widths": [8, 32, 1_000_000]}}, "over the limit of 50,000,000"),
    ({"arch_kwargs": {"no_such_argument": 1}}, "cannot rebuild the network"),
])
def test_hostile_network_metadata_is_refused_before_building(saved, changes, words):
    _, path = saved
    rewrite_metadata(path, **changes)
    with pytest.raises(CheckpointError, match=words) as caught:
        checkpoint.load(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_metadata_that_is_no_object_is_refused(saved):
    _, path = saved
    tensors, _ = checkpoint.read(path)
    save_file(tensors, str(path), metadata={"digitlab": "[1, 2, 3]"})
    with pytest.raises(CheckpointError, match="not a JSON object"):
        checkpoint.load(path)


def test_an_onnx_file_is_named_as_one(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07" + bytes(200))
    with pytest.raises(CheckpointError, match="an ONNX export, not a .safetensors checkpoint"):
        checkpoint.load(path)


def test_a_flipped_byte_in_the_weights_is_caught_by_their_checksum(tmp_path):
    path = tmp_path / "model.safetensors"
    model = attach_data_config(create_model("conv3_dense64"), TrainConfig(model="conv3_dense64").data_config())
    checkpoint.save(path, model, {})
    checkpoint.load(path)  # whole: loads
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # one bit of the last weight; safetensors itself loads the file as it is
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        checkpoint.load(path)
    assert checkpoint.read(checkpoint.BUNDLED)[1]["weights_sha256"]  # the bundled model carries one too
