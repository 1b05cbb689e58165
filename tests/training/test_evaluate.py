import torch

from digitlab.training.config import TrainConfig
from digitlab.training.data import attach_data_config
from digitlab.training.evaluate import evaluate, infer
from digitlab.training.models import create_model


def described(name: str) -> torch.nn.Module:
    """A fresh network with the data configuration a run of it would give it."""
    return attach_data_config(create_model(name), TrainConfig(model=name).data_config())


def test_infer_batches_match_one_pass(test_split):
    torch.manual_seed(0)
    model = described("conv3_dense64").eval()
    images = test_split[0][:50]
    torch.testing.assert_close(infer(model, images, batch_size=7), infer(model, images, batch_size=50))


def test_shift_tta_returns_log_probabilities(test_split):
    model = described("conv3_dense64").eval()
    logits = infer(model, test_split[0][:20], shifts=((0, 0), (1, 0), (0, -1)))
    torch.testing.assert_close(logits.exp().sum(1), torch.ones(20))


def test_evaluate_on_real_images_has_all_fields(test_split):
    images, labels = test_split
    result = evaluate(described("mlp_3x256"), images[:200], labels[:200])
    assert result["count"] == 200
    assert sum(map(sum, result["confusion"])) == 200
    assert len(result["misclassified"]) == round(200 * (1 - result["accuracy"]))


def test_infer_on_no_images_is_as_wide_as_the_model():
    cfg = TrainConfig(model="digitnet", model_kwargs={"classes": 11}, not_a_digit=0.1)
    model = attach_data_config(create_model("digitnet", classes=11), cfg.data_config())
    assert infer(model, torch.zeros(0, 28, 28, dtype=torch.uint8)).shape == (0, 11)
    assert infer(described("mlp_3x256"), torch.zeros(0, 28, 28, dtype=torch.uint8)).shape == (0, 10)


def test_infer_normalises_as_the_model_says(test_split):
    from dataclasses import replace

    model = described("conv3_dense64").eval()
    images = test_split[0][:20]
    expected = model(((images.float() / 255 - 0.5) / 0.25).unsqueeze(1))
    model.data_config = replace(model.data_config, mean=0.5, std=0.25)
    torch.testing.assert_close(infer(model, images), expected)
