"""The augmentations for handwriting that is not MNIST's: each does what it says, batched and seeded."""

import torch

from digitlab.training.augment import AugmentConfig, elastic_field, random_affine, random_low_res, random_stroke_width

STILL = dict(rotate=0.0, shift=0.0, scale=0.0, shear=0.0)


def strokes(count: int = 8) -> torch.Tensor:
    """(count, 1, 28, 28) images of a cross: a 3-pixel upright bar and a 2-pixel crossbar, ink 1 on a 0 background."""
    x = torch.zeros(count, 1, 28, 28)
    x[:, :, 6:22, 12:15] = 1.0
    x[:, :, 12:14, 8:20] = 1.0
    return x


def test_with_every_change_off_the_images_come_back_unchanged():
    x = strokes()
    assert torch.allclose(random_affine(x, AugmentConfig(**STILL)), x, atol=1e-5)


def test_every_change_is_seeded_and_keeps_the_background_dark():
    x = strokes()
    cfg = AugmentConfig(rotate=10, shift=0.0, scale=0.1, shear=10, aspect=0.3, elastic=2.0, stroke=0.3, low_res=0.3)
    a = random_affine(x, cfg, torch.Generator().manual_seed(1))
    b = random_affine(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1 and a[:, :, 0, :].abs().max() < 0.05 and a[:, :, :, -1].abs().max() < 0.05


def test_aspect_stretches_one_axis_against_the_other():
    x = strokes(64)
    stretched = random_affine(x, AugmentConfig(**STILL, aspect=0.6), torch.Generator().manual_seed(0))
    widths = (stretched[:, 0, 12:14].amax(dim=1) > 0.5).sum(dim=1).float()  # the crossbar's length, 12 unstretched
    heights = (stretched[:, 0, :, 12:15].amax(dim=2) > 0.5).sum(dim=1).float()  # the upright bar's, 16
    assert widths.min() < 12 < widths.max() and heights.min() < 16 < heights.max()
    assert ((widths > 12) & (heights > 16)).sum() <= 3  # wider and taller at once only by rounding


def test_elastic_moves_strokes_smoothly_and_no_further_than_asked():
    field = elastic_field((16, 1, 28, 28), 2.0, torch.Generator().manual_seed(0))
    pixels = field * torch.tensor([28 / 2, 28 / 2])  # back from grid units to pixels
    assert field.shape == (16, 28, 28, 2) and pixels.abs().max() <= 2.0 + 1e-5 and pixels.abs().max() > 0.5
    assert (pixels[:, 1:] - pixels[:, :-1]).abs().max() < 1.0  # neighbours move together: no stroke tears


def test_stroke_width_thickens_some_images_and_thins_others():
    x = strokes(400) * 0.4 + torch.nn.functional.max_pool2d(strokes(400), 3, 1, 1) * 0.6  # a soft rim at 0.6
    changed = random_stroke_width(x, 0.25, torch.Generator().manual_seed(0))
    ink = (changed > 0.5).flatten(1).sum(1).float()
    before = (x > 0.5).flatten(1).sum(1).float()
    thicker, thinner = (ink > before).float().mean(), (ink < before).float().mean()
    assert 0.15 < thicker < 0.35 and 0.15 < thinner < 0.35
    assert ((changed > 0.5).flatten(1).sum(1) > 0).all()  # no stroke vanishes


def test_low_res_blurs_a_share_of_the_images_like_a_small_scan():
    x = strokes(200)
    blurred = random_low_res(x, 0.5, torch.Generator().manual_seed(0))
    changed = (blurred != x).flatten(1).any(1).float().mean()
    assert 0.35 < changed < 0.65
    soft = blurred[(blurred != x).flatten(1).any(1)]
    assert ((soft > 0.05) & (soft < 0.95)).flatten(1).sum(1).min() > 20  # grey edges, as an enlarged scan has
    assert torch.allclose(soft.amax(dim=(1, 2, 3)), torch.ones(len(soft)))  # as bright as before
