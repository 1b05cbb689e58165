import pytest
import torch

from digitlab.training.models import count_parameters, create_model, list_models
from digitlab.training.summary import summary_table

TUTORIAL_PARAMETERS = {
    "cnn5x5_dense1000": 1_087_106,
    "tinyvgg_dropout": 65_788,
    "conv32_dense128": 2_770_634,
    "conv3_dense64": 93_322,
    "mlp_3x256": 335_114,
}


@pytest.mark.parametrize("name", sorted(TUTORIAL_PARAMETERS))
def test_tutorial_parameter_counts_are_exact(name):
    assert count_parameters(create_model(name)) == TUTORIAL_PARAMETERS[name]


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(4, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (4, 10)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_channels_last_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(3, 1, 28, 28)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list_models())
def test_summary_totals_match(name):
    model = create_model(name)
    table = summary_table(model, title=name)
    assert f"Total params: {count_parameters(model):,}" in table
    assert "(None, 10)" in table.splitlines()[-6]


def test_unknown_network_lists_the_choices():
    with pytest.raises(ValueError, match="cnn5x5_dense1000"):
        create_model("resnet9000")


def test_bad_arguments_are_a_value_error():
    with pytest.raises(ValueError, match="bad arguments"):
        create_model("mlp_3x256", width=3)


def test_model_remembers_how_it_was_built():
    model = create_model("conv3_dense64")
    assert model.arch_name == "conv3_dense64" and model.arch_kwargs == {}


def test_the_networks_page_lists_every_network_with_its_parameter_count():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "networks.md").read_text(encoding="utf-8")
    table = page[page.index("## The networks"):].split("\n\n")[1]
    rows = {re.match(r"\| `(\w+)`", line).group(1): line for line in table.splitlines() if line.startswith("| `")}
    assert sorted(rows) == sorted(list_models())
    for name, line in rows.items():
        assert f"{count_parameters(create_model(name)):,}" in line, name


def test_the_quick_network_with_a_crop_reads_only_the_centre_and_summarises():
    """`fast`'s network: the outer two-pixel ring of the 28x28 input changes nothing, a pixel inside it does."""
    torch.manual_seed(0)
    model = create_model("digitnet_quick", crop=2).eval()
    x = torch.rand(2, 1, 28, 28)
    ring = x.clone()
    ring[..., :2, :] = ring[..., -2:, :] = ring[..., :, :2] = ring[..., :, -2:] = 1.0
    inside = x.clone()
    inside[..., 2, 2] += 1.0
    with torch.no_grad():
        assert torch.equal(model(ring), model(x))
        assert not torch.allclose(model(inside), model(x))
    assert count_parameters(model) == 72_058  # the dense layer reads 4x4 maps instead of 5x5
    assert "margin=2" in repr(model) and "Total params: 72,058" in summary_table(model, title="quick")
    with pytest.raises(ValueError, match="crop"):
        create_model("digitnet_quick", crop=4)
