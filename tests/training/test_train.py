import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from digitlab.labels import NOT_A_DIGIT, class_names
from digitlab.training import checkpoint
from digitlab.training.augment import AugmentConfig, random_affine
from digitlab.training.config import TrainConfig
from digitlab.training.loop import train, with_extra, with_nondigits


def small(**overrides) -> TrainConfig:
    values = dict(model="conv3_dense64", epochs=2, batch_size=64, limit=3000, validation_split=0.1, seed=1)
    return TrainConfig(**(values | overrides))


def test_short_run_loss_falls_and_writes_everything(tmp_path):
    result = train(small(), tmp_path, quiet=True)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert last["val_accuracy"] > 0.8
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "resume.safetensors", "history.json",
                                                    "history.csv", "curves.png"}
    assert json.loads((tmp_path / "history.json").read_text()) == result.history
    model, meta = checkpoint.load(tmp_path / "model.safetensors")
    assert meta["config"]["model"] == "conv3_dense64" and meta["epoch"] == 2
    assert meta["metrics"]["val_accuracy"] == last["val_accuracy"]


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    whole = train(small(), tmp_path / "whole", quiet=True)
    train(small(epochs=1), tmp_path / "broken", quiet=True)
    resumed = train(small(), tmp_path / "broken", resume=True, quiet=True)
    assert len(resumed.history) == 2
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_resume_refuses_other_settings(tmp_path):
    train(small(epochs=1), tmp_path, quiet=True)
    with pytest.raises(ValueError, match="other settings"):
        train(small(learning_rate=0.5), tmp_path, resume=True, quiet=True)


@pytest.mark.parametrize("schedule,optimizer", [("onecycle", "adamw"), ("step", "sgd"), ("plateau", "adam")])
def test_schedules_optimizers_ema_and_augmentation_run(tmp_path, schedule, optimizer):
    cfg = small(schedule=schedule, optimizer=optimizer, ema_decay=0.9, augment=True, label_smoothing=0.1,
                epochs=2, limit=2000, learning_rate=0.05 if optimizer == "sgd" else 2e-3)
    first = train(cfg, tmp_path, quiet=True)
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert first.history[-1]["val_accuracy"] > 0.3  # chance is 0.1
    resumed = train(cfg, tmp_path, resume=True, quiet=True)  # nothing left to do: history as saved
    assert resumed.history == first.history


def test_early_stopping_keeps_the_best_epoch(tmp_path, monkeypatch, mnist_dir):
    cfg = small(epochs=6, early_stopping=1, limit=1000)
    ScriptedValidation(monkeypatch, mnist_dir, cfg, [0.5, 0.7, 0.6, 0.65])  # best: epoch 2, no better in epoch 3
    result = train(cfg, tmp_path, quiet=True)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    _, meta = checkpoint.load(tmp_path / "model.safetensors")
    assert meta["epoch"] == 2


def test_a_run_whose_loss_is_no_longer_a_number_stops_and_keeps_the_last_good_epoch(tmp_path, monkeypatch,
                                                                                      mnist_dir):
    import math

    from digitlab.errors import TrainingError

    from digitlab.training import loop

    good = train(small(epochs=1, limit=1000), tmp_path, quiet=True)
    kept = (tmp_path / "model.safetensors").read_bytes()
    real = loop.train_one_epoch

    def diverging(cfg, state, split, epoch, *args, **kwargs):  # the second epoch's loss overflows
        return real(cfg, state, split, epoch, *args, **kwargs) | ({"train_loss": math.nan} if epoch == 2 else {})

    monkeypatch.setattr(loop, "train_one_epoch", diverging)
    with pytest.raises(TrainingError, match="diverged in epoch 2.*epoch 1 is kept"):
        train(small(epochs=3, limit=1000), tmp_path, resume=True, quiet=True)
    assert (tmp_path / "model.safetensors").read_bytes() == kept  # no weights that are not numbers were written
    assert all(math.isfinite(v) for v in good.history[0].values())
    done = subprocess.run([sys.executable, "-m", "digitlab", "train", "--model", "conv3_dense64", "--epochs", "2",
                           "--limit", "1000", "--optimizer", "sgd", "--learning-rate", "1e6", "--quiet",
                           "--data-dir", str(mnist_dir), "--out", str(tmp_path / "wild")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "diverged in epoch 1" in done.stderr and "nothing was kept" in done.stderr


def test_config_rejects_nonsense():
    for bad in (dict(optimizer="rmsprop"), dict(schedule="cosine"), dict(epochs=0), dict(learning_rate=-1)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"epochz": 3})


def test_random_affine_keeps_shape_background_and_is_seeded():
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0
    cfg = AugmentConfig(rotate=15, shift=0.1, scale=0.1, shear=10)
    a = random_affine(x, cfg, torch.Generator().manual_seed(0))
    b = random_affine(x, cfg, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a[:, :, 0, :].abs().max() == 0  # borders stay background
    assert not torch.allclose(a[0], a[1])
    assert (a.sum((1, 2, 3)) / x.sum((1, 2, 3))).sub(1).abs().max() < 0.5  # ink is moved, not lost


def test_ctrl_c_loses_at_most_the_running_epoch(tmp_path, mnist_dir):
    """A real process, really interrupted after its first epoch, then resumed to the end."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "digitlab.cli", "train", "--model", "conv3_dense64", "--epochs", "30",
               "--limit", "2000", "--batch-size", "64", "--out", str(out), "--data-dir", str(mnist_dir)]
    # A shell's background job ignores SIGINT and children inherit that; give the trainer Ctrl-C as a terminal would.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "history.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    done = len(json.loads((out / "history.json").read_text()))
    assert 1 <= done < 30
    checkpoint.load(out / "model.safetensors")  # what is on disk is whole
    resumed = subprocess.run(command[:7] + [str(done + 1)] + command[8:] + ["--resume"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {done}" in resumed.stdout


def test_not_a_digit_needs_an_eleventh_output():
    with pytest.raises(ValueError, match="11th output"):
        small(model="digitnet", not_a_digit=0.1)
    with pytest.raises(ValueError, match="not_a_digit"):
        small(model="digitnet", model_kwargs={"classes": 11}, not_a_digit=1.5)


def test_with_nondigits_appends_letters_labelled_ten():
    images, labels = torch.zeros(20, 28, 28, dtype=torch.uint8), torch.arange(20) % 10
    pool = torch.full((5, 28, 28), 255, dtype=torch.uint8)
    label = class_names(not_a_digit=True).index(NOT_A_DIGIT)
    x, y = with_nondigits(images, labels, pool, 0.25, torch.Generator().manual_seed(0), label)
    assert x.shape == (25, 28, 28) and torch.equal(y[:20], labels) and torch.equal(y[20:], torch.full((5,), 10))
    assert bool((x[20:] == 255).all()) and bool((x[:20] == 0).all())


def test_with_extra_appends_pool_images_with_their_own_labels():
    from digitlab.training.data import Split

    images, labels = torch.zeros(40, 28, 28, dtype=torch.uint8), torch.zeros(40, dtype=torch.int64)
    pool = Split(torch.arange(6, dtype=torch.uint8)[:, None, None].expand(6, 28, 28).clone(), torch.arange(6) + 3)
    x, y = with_extra(images, labels, pool, 0.1, torch.Generator().manual_seed(0))
    assert x.shape == (44, 28, 28) and torch.equal(y[:40], labels)
    assert torch.equal(y[40:], x[40:, 0, 0].long() + 3)   # each extra image keeps its own label


def test_a_run_with_other_writers_and_real_letters_draws_from_both(tmp_path, tiny_realdata, monkeypatch):
    """Each batch carries letters (pen-drawn and real) and other writers' digits (a folder of MNIST digits stands in
    for the real one here), and the checkpoint records both settings."""
    from digitlab.training import loop

    folder = tiny_realdata(tmp_path / "real", per_file=20)
    seen = []
    original = loop.with_extra
    monkeypatch.setattr(loop, "with_extra", lambda *a, **k: seen.append(a[2]) or original(*a, **k))
    cfg = small(model="digitnet", model_kwargs={"classes": 11}, not_a_digit=0.1, real_letters=True,
                other_writers=0.2, realdata_dir=str(folder), limit=200, epochs=1, validation_split=0.0)
    train(cfg, tmp_path / "run", quiet=True, dry_run=True)
    pools = {len(pool) for pool in seen}
    assert len(pools) == 2   # letters (pen-drawn and real) and other writers' digits, both drawn from
    _, meta = checkpoint.load(tmp_path / "run" / "model.safetensors")
    assert meta["config"]["other_writers"] == 0.2 and meta["config"]["real_letters"] is True
    assert set(meta["other_writers_sha256"]) == {"optdigits_orig_32x32.npz", "femnist_letters_28x28.npz"}
    with pytest.raises(ValueError, match="real_letters needs not_a_digit"):
        small(real_letters=True)
    with pytest.raises(ValueError, match="other_writers must be in"):
        small(other_writers=1.0)


def test_training_with_not_a_digit_learns_to_refuse_letters(tmp_path):
    from digitlab.datasets.nondigits import letters_in_mnist_form
    from digitlab.training.evaluate import infer

    cfg = small(model="digitnet", model_kwargs={"classes": 11}, not_a_digit=0.25, limit=4000, epochs=2,
                optimizer="adamw", learning_rate=3e-3, validation_split=0.0)
    result = train(cfg, tmp_path, quiet=True)
    _, meta = checkpoint.load(tmp_path / "model.safetensors")
    assert meta["classes"][-1] == "not a digit" and len(meta["classes"]) == 11
    letters = torch.from_numpy(letters_in_mnist_form(200, seed=99))  # other letters than the ones trained on
    refused = (infer(result.model, letters).argmax(1) == 10).double().mean().item()
    assert refused > 0.8


class ScriptedValidation:
    """Stands in for the loop's ``infer`` on the validation split: the n-th validation scores ``accuracies[n]``.

    Early stopping then stops where the script says, whatever the (real) training did to the weights.
    """

    def __init__(self, monkeypatch, mnist_dir, cfg: TrainConfig, accuracies: list[float]):
        from digitlab.training import loop
        from digitlab.training.data import load_mnist, split_validation

        images, labels = load_mnist("train", mnist_dir)
        _, val = split_validation(images[:cfg.limit], labels[:cfg.limit], cfg.validation_split, cfg.seed)
        self.labels, self.accuracies, self.calls = val.labels, accuracies, 0
        monkeypatch.setattr(loop, "infer", self)

    def __call__(self, model, images, *args, **kwargs) -> torch.Tensor:
        assert len(images) == len(self.labels)
        right = round(self.accuracies[self.calls] * len(images))
        self.calls += 1
        predicted = torch.cat([self.labels[:right], (self.labels[right:] + 1) % 10])
        return torch.nn.functional.one_hot(predicted, 10).float() * 5


def stateless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_resume_after_the_best_epoch_still_keeps_the_best_weights(tmp_path, monkeypatch, mnist_dir):
    """--resume with --early-stopping: the best epoch's weights, saved before the break, are what the run hands back."""
    cfg = small(epochs=6, early_stopping=2, limit=1000)
    script = ScriptedValidation(monkeypatch, mnist_dir, cfg, [0.5, 0.7, 0.6, 0.65])  # best: 2, stop after 4
    whole = train(cfg, tmp_path / "whole", quiet=True)
    assert [row["epoch"] for row in whole.history] == [1, 2, 3, 4]

    script.calls = 0
    train(small(epochs=3, early_stopping=2, limit=1000), tmp_path / "broken", quiet=True)  # broken after epoch 3
    resumed = train(cfg, tmp_path / "broken", resume=True, quiet=True)
    assert stateless(resumed.history) == stateless(whole.history)
    saved, meta = checkpoint.load(tmp_path / "broken" / "model.safetensors")
    assert meta["epoch"] == 2
    for a, b, c in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(),
                       saved.state_dict().values()):
        torch.testing.assert_close(b, a)
        torch.testing.assert_close(c, a)


def test_resuming_a_run_that_stopped_early_trains_no_further(tmp_path, monkeypatch, mnist_dir):
    cfg = small(epochs=6, early_stopping=1, limit=1000)
    ScriptedValidation(monkeypatch, mnist_dir, cfg, [0.7, 0.6, 0.9, 0.9])  # stops after epoch 2
    first = train(cfg, tmp_path, quiet=True)
    assert len(first.history) == 2
    again = train(cfg, tmp_path, resume=True, quiet=True)
    assert again.history == first.history
    for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_schedule_settings_are_recorded_in_the_config(tmp_path):
    """The one-cycle warm-up and the plateau factor are settings of the run, so the checkpoint names them."""
    import torch.optim.lr_scheduler as lr

    from digitlab.training.state import make_schedule

    def peak_step(warmup: float) -> int:
        cfg = small(schedule="onecycle", onecycle_warmup=warmup, epochs=1)
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.learning_rate)
        schedule = make_schedule(cfg, optimizer, steps_per_epoch=100)
        rates = []
        for _ in range(100):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return max(range(100), key=rates.__getitem__)

    assert peak_step(0.25) == 24 and peak_step(0.5) == 49
    cfg = small(schedule="plateau", plateau_factor=0.5)
    plateau = make_schedule(cfg, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 10)
    assert isinstance(plateau, lr.ReduceLROnPlateau) and plateau.factor == 0.5
    assert TrainConfig().onecycle_warmup == 0.25 and TrainConfig().plateau_factor == 0.3  # as before they were settings
    for bad in (dict(onecycle_warmup=0.0), dict(onecycle_warmup=1.0), dict(plateau_factor=1.5)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)

    train(small(schedule="plateau", plateau_factor=0.5, epochs=1, limit=500), tmp_path, quiet=True)
    _, meta = checkpoint.load(tmp_path / "model.safetensors")
    assert meta["config"]["plateau_factor"] == 0.5 and meta["config"]["onecycle_warmup"] == 0.25


def test_the_run_decides_the_class_list_and_the_checkpoint_carries_it(tmp_path):
    cfg = small(model="digitnet", model_kwargs={"classes": 11}, not_a_digit=0.1, epochs=1, limit=500)
    result = train(cfg, tmp_path, dry_run=True, quiet=True)
    _, meta = checkpoint.load(tmp_path / "model.safetensors")
    assert meta["classes"] == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", NOT_A_DIGIT]
    assert meta["normalisation"] == {"mean": 0.1307, "std": 0.3081}
    assert result.model.data_config == cfg.data_config()


def test_a_network_whose_outputs_do_not_match_the_classes_is_refused(tmp_path):
    # an 11th output nobody teaches: the class list has ten names, the network eleven outputs
    cfg = small(model="digitnet", model_kwargs={"classes": 11}, epochs=1, limit=500)
    with pytest.raises(ValueError, match="11 outputs, but the class list has 10 names"):
        train(cfg, tmp_path, dry_run=True, quiet=True)


def test_to_batch_normalises_as_the_data_config_says():
    from digitlab.training.data import DataConfig
    from digitlab.training.loop import to_batch

    images = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    plain = to_batch(images, small(), DataConfig(0.0, 1.0, ("0", "1")), None)
    shifted = to_batch(images, small(), DataConfig(0.5, 0.25, ("0", "1")), None)
    assert plain.shape == (2, 1, 28, 28) and bool((plain == 1).all()) and bool((shifted == 2).all())


@pytest.mark.parametrize("bf16,dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_bf16_trains_in_bfloat16_and_keeps_float32_weights(tmp_path, monkeypatch, bf16, dtype):
    from digitlab.training import loop

    seen = set()  # what the first convolution hands on while training (validation runs without autocast)
    real = loop.build_state

    def watched(*args, **kwargs):
        state = real(*args, **kwargs)
        first = next(m for m in state.model.modules() if isinstance(m, torch.nn.Conv2d))
        first.register_forward_hook(lambda module, _, out: seen.add(out.dtype) if module.training else None)
        return state

    monkeypatch.setattr(loop, "build_state", watched)
    result = train(small(bf16=bf16, epochs=1, limit=1200), tmp_path, quiet=True)
    assert seen == {dtype}
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert result.history[-1]["val_accuracy"] > 0.3  # it learns: chance is 0.1
    _, meta = checkpoint.load(tmp_path / "model.safetensors")
    assert meta["config"]["bf16"] is bf16


def test_one_seed_per_epoch():
    from digitlab.training.loop import epoch_seed

    seeds = {epoch_seed(seed, epoch) for seed in range(3) for epoch in range(1, 50)}
    assert len(seeds) == 3 * 49  # no two epochs of these runs draw the same numbers


def test_a_finished_folder_is_not_replaced_unasked_and_resume_needs_a_run(tmp_path):
    cfg = small(epochs=1, limit=600)
    with pytest.raises(ValueError, match="no run to resume"):
        train(cfg, tmp_path / "none", resume=True, quiet=True)
    first = train(cfg, tmp_path, quiet=True)
    with pytest.raises(ValueError, match="--resume, or replace it with --overwrite"):
        train(cfg, tmp_path, quiet=True)
    again = train(small(epochs=1, limit=600, seed=2), tmp_path, overwrite=True, quiet=True)
    assert again.history[0]["train_loss"] != first.history[0]["train_loss"]


def test_a_one_cycle_run_cannot_be_stretched_on_resume(tmp_path):
    """Its learning-rate curve is planned for the run's length: refused before any training, not epochs later."""
    train(small(schedule="onecycle", epochs=1, limit=600), tmp_path, quiet=True)
    before = (tmp_path / "resume.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"one-cycle schedule is planned for the whole run \(1 epochs\)"):
        train(small(schedule="onecycle", epochs=2, limit=600), tmp_path, resume=True, quiet=True)
    assert (tmp_path / "resume.safetensors").read_bytes() == before


def test_without_a_validation_split_the_test_accuracy_is_recorded(tmp_path, test_split):
    from digitlab.training.evaluate import infer

    result = train(small(epochs=1, limit=600, validation_split=0.0), tmp_path, quiet=True)
    model, meta = checkpoint.load(tmp_path / "model.safetensors")
    assert meta["metrics"] == result.metrics and meta["metrics"]["test_images"] == 10_000
    images, labels = test_split
    assert meta["metrics"]["test_accuracy"] == (infer(model, images).argmax(1) == labels).double().mean().item()
    assert meta["metrics"]["test_accuracy"] > 0.2  # chance is 0.1


def test_resume_repairs_what_a_kill_between_two_writes_left(tmp_path):
    """Killed after resume.safetensors but before history.json, or inside a write: resume puts the folder right."""
    whole = train(small(epochs=2, limit=600), tmp_path, quiet=True)
    (tmp_path / "history.json").write_text(json.dumps(whole.history[:1]))  # the last epoch's history never landed
    leftovers = [tmp_path / ".model.safetensors.k1l2.tmp", tmp_path / ".history.json.x9.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    resumed = train(small(epochs=2, limit=600), tmp_path, resume=True, quiet=True)
    assert json.loads((tmp_path / "history.json").read_text()) == resumed.history == whole.history
    assert not any(path.exists() for path in leftovers)


def test_atomic_write_flushes_the_file_and_its_folder(tmp_path, monkeypatch):
    import os
    import stat

    from digitlab import files

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode), real_fsync(fd)))
    files.atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert [stat.S_ISREG(mode) for mode in synced] == [True, False] and stat.S_ISDIR(synced[1])


def test_a_resume_file_without_its_optimiser_state_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    from digitlab.errors import CheckpointError

    train(small(epochs=1, limit=1000), tmp_path, quiet=True)
    path = tmp_path / "resume.safetensors"
    tensors, meta = checkpoint.read(path)
    del meta["optimizer"]  # as a hand-made or truncated resume file would be
    meta["weights_sha256"] = checkpoint.weights_digest(tensors)
    save_file(tensors, str(path), metadata={"digitlab": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="not a whole resume file.*--overwrite"):
        train(small(epochs=2, limit=1000), tmp_path, resume=True, quiet=True)


def test_training_keeps_freed_memory_for_the_next_step(tmp_path, monkeypatch):
    """Every run sets the allocator up before its first step (tests/test_allocator.py checks what that does)."""
    from digitlab.training import loop

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append("kept") or True)
    train(small(limit=200, epochs=1, validation_split=0.0), tmp_path / "run", quiet=True, dry_run=True)
    assert calls == ["kept"]
