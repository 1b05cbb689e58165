"""Fine-tuning on a labelled folder: the command writes a self-describing checkpoint and its ONNX export and
refuses to replace them unasked; the model learns what the folder teaches; a stale temperature is never carried, the
base's refusal bar is."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from digitlab.cli import main
from digitlab.training import checkpoint
from digitlab.training.finetune import FinetuneConfig, finetune
from digitlab.datasets.folders import load_folder


def test_the_command_writes_a_checkpoint_naming_its_base_and_data_and_its_onnx(tmp_path, small_model_path,
                                                                             labelled_folders, capsys):
    folder = labelled_folders[0]["class folders"]
    out = tmp_path / "tuned"
    args = ["finetune", str(small_model_path), "--data", str(folder), "--out", str(out), "--epochs", "2",
            "--quiet"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "skipped 4 of 34 files" in captured.err and "model.onnx" in captured.out
    _, meta = checkpoint.load(out / "model.safetensors")
    _, base = checkpoint.load(small_model_path)
    record = meta["finetune"]
    assert record["base"]["weights_sha256"] == base["weights_sha256"] != meta["weights_sha256"]
    data = load_folder(folder)
    assert record["data"]["sha256"] == data.sha256 and record["data"]["bytes"] == data.bytes
    assert record["data"]["images"] == 30 and record["data"]["trained_on"] + record["data"]["held_out"] == 30
    assert record["settings"]["epochs"] == 2 and len(record["history"]) == 2

    from digitlab.recognition.engine import load_engine

    engine = load_engine(str(out / "model.onnx"), "onnx")
    assert engine.metadata["finetune"]["data"]["sha256"] == data.sha256

    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0

    (out / "model.safetensors").unlink()  # an ONNX file alone is someone's model too: refused before any training,
    (out / "model.onnx").write_bytes(b"someone's model")  # by the exporter's own check, and left as it was
    assert main(args) == 2
    assert "model.onnx already exists: pass --overwrite" in capsys.readouterr().err
    assert (out / "model.onnx").read_bytes() == b"someone's model" and not (out / "model.safetensors").exists()
    finetune(folder, out, small_model_path, FinetuneConfig(epochs=1), export=False, quiet=True)  # writes no ONNX
    assert (out / "model.onnx").read_bytes() == b"someone's model" and (out / "model.safetensors").exists()


def test_the_model_learns_what_the_folder_teaches(tmp_path, small_model_path, labelled_folders):
    """Threes filed under 8: before, the model reads them as 3; after, mostly as 8 (MNIST mixed in or not)."""
    source = labelled_folders[0]["file names"]
    folder = tmp_path / "relabelled"
    (folder / "8").mkdir(parents=True)
    for path in source.glob("*.png"):
        if path.name.startswith("3_") or path.stem.endswith(("_3", "-3")):
            for copy in range(4):
                shutil.copy(path, folder / "8" / f"{copy}_{path.name}")
    config = FinetuneConfig(epochs=4, learning_rate=3e-3, mnist_ratio=0.5, validation_split=0.0, batch_size=16)
    result = finetune(folder, tmp_path / "out", small_model_path, config, export=False, quiet=True)

    from digitlab.training.evaluate import infer
    import torch

    images = torch.from_numpy(load_folder(folder).images)
    before = infer(checkpoint.load(small_model_path)[0], images).argmax(1)
    after = infer(result.model, images).argmax(1)
    assert (before == 3).float().mean() > 0.5
    assert (after == 8).float().mean() > 0.5
    assert np.isfinite([row["train_loss"] for row in result.history]).all()


def test_a_stale_temperature_is_refitted_or_dropped(tmp_path, small_model_path, labelled_folders):
    base = tmp_path / "base.safetensors"
    shutil.copy(small_model_path, base)
    checkpoint.update_metadata(base, {"calibration": {"temperature": 0.123}})
    config = FinetuneConfig(epochs=1, validation_split=0.3)
    result = finetune(labelled_folders[0]["class folders"], tmp_path / "out", base, config, export=False,
                      quiet=True)
    _, meta = checkpoint.load(tmp_path / "out" / "model.safetensors")
    calibration = meta.get("calibration")
    assert calibration is None or (calibration["fitted_on"].startswith("after fine-tuning")
                                   and calibration["temperature"] != 0.123)
    assert result.metrics.keys() >= {"before_val_accuracy", "after_val_accuracy"}


def test_the_base_models_refusal_bar_is_carried_into_the_fine_tuned_one(tmp_path, labelled_folders):
    """The bundled model is read with "not a digit" lowered and its own threshold; its fine-tuned copy is read the
    same way, not with no offset at all (which would refuse real digits the base read)."""
    from digitlab.recognition.predict import Recognizer
    from digitlab.recognition.engine import load_engine

    base = tmp_path / "base.safetensors"
    shutil.copy(checkpoint.BUNDLED, base)
    _, base_meta = checkpoint.load(base)
    config = FinetuneConfig(epochs=1, validation_split=0.3, mnist_ratio=2.0)
    finetune(labelled_folders[0]["class folders"], tmp_path / "out", base, config, export=False, quiet=True)
    _, meta = checkpoint.load(tmp_path / "out" / "model.safetensors")
    calibration = meta["calibration"]
    assert calibration["fitted_on"].startswith("after fine-tuning")
    assert calibration["not_a_digit_offset"] == base_meta["calibration"]["not_a_digit_offset"] > 0
    assert calibration["threshold"] == base_meta["calibration"]["threshold"]
    assert calibration["refusal_bar"]["carried_from_base"] == base_meta["calibration"]["refusal_bar"]
    recognizer = Recognizer(load_engine(tmp_path / "out" / "model.safetensors", backend="torch"))
    assert recognizer.not_a_digit_offset == calibration["not_a_digit_offset"]


def test_bad_settings_and_empty_folders_are_one_line_errors(tmp_path, small_model_path, capsys):
    with pytest.raises(ValueError, match="mnist_ratio"):
        FinetuneConfig(mnist_ratio=-1)
    (tmp_path / "empty" / "3").mkdir(parents=True)
    assert main(["finetune", str(small_model_path), "--data", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "usable labelled image" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_norm_keeps_batch_norm_statistics_while_the_weights_learn(freeze):
    import torch

    from digitlab.training.config import TrainConfig
    from digitlab.training.data import Split
    from digitlab.training.loop import train_one_epoch
    from digitlab.training.state import build_state

    cfg = TrainConfig(model="digitnet_fast", epochs=1, batch_size=16, validation_split=0.0, channels_last=False)
    state = build_state(cfg, torch.device("cpu"), steps=2)
    split = Split(torch.randint(0, 256, (32, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (32,)))
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    train_one_epoch(cfg, state, split, 1, freeze_norm=freeze)
    after = state.model.state_dict()
    statistics = [k for k in before if k.endswith("running_mean")]
    weights = [k for k in before if k.endswith("weight")]
    assert statistics and all(torch.equal(before[k], after[k]) == freeze for k in statistics)
    assert any(not torch.equal(before[k], after[k]) for k in weights)


def test_keep_base_saves_that_share_of_the_base_weights_averaged_in(tmp_path, small_model_path, labelled_folders):
    """The saved model is exactly keep_base of the base plus the rest of what the same run learnt alone."""
    import torch

    folder = labelled_folders[0]["class folders"]
    settings = dict(epochs=2, learning_rate=3e-3, mnist_ratio=0.5, validation_split=0.0, batch_size=16)
    for name, keep in (("alone", 0.0), ("kept", 0.25)):
        finetune(folder, tmp_path / name, small_model_path, FinetuneConfig(keep_base=keep, **settings),
                 export=False, quiet=True)
    base = checkpoint.load(small_model_path)[0].state_dict()
    alone = checkpoint.load(tmp_path / "alone" / "model.safetensors")[0].state_dict()
    kept = checkpoint.load(tmp_path / "kept" / "model.safetensors")[0].state_dict()
    floats = [k for k in base if base[k].is_floating_point()]
    assert any(not torch.allclose(alone[k], base[k]) for k in floats)
    for k in floats:
        torch.testing.assert_close(kept[k], 0.75 * alone[k] + 0.25 * base[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="keep_base"):
        FinetuneConfig(keep_base=1.0)
