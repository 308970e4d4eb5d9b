"""The losses that teach the separation of touching particles."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss

from rformer_monai.losses import (
    DiceAndWeightedBCELoss,
    MaskAndSeparationLoss,
    WeightedMaskAndSeparationLoss,
    weighted_cross_entropy,
)


def test_loss_is_dice_on_mask_plus_weighted_cross_entropy_on_separation():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, generator=generator)
    target = torch.stack([(torch.rand(2, 8, 8, generator=generator) > 0.5).float(), torch.rand(2, 8, 8, generator=generator)], 1)
    dice = DiceLoss(sigmoid=True, batch=True)(logits[:, :1], target[:, :1])
    cross_entropy = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:], target[:, 1:])
    assert MaskAndSeparationLoss(0.5)(logits, target) == pytest.approx(float(dice + 0.5 * cross_entropy), rel=1e-6)
    assert MaskAndSeparationLoss(0.0)(logits, target) == pytest.approx(float(dice), rel=1e-6)


def test_gradient_reaches_both_channels():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    target = torch.ones(1, 2, 4, 4)
    MaskAndSeparationLoss()(logits, target).backward()
    assert logits.grad[:, 0].abs().sum() > 0 and logits.grad[:, 1].abs().sum() > 0


@pytest.mark.parametrize("logits_shape, target_shape", [((1, 1, 4, 4), (1, 1, 4, 4)), ((1, 2, 4, 4), (1, 1, 4, 4))])
def test_shape_errors(logits_shape, target_shape):
    with pytest.raises(ValueError, match=r"target \(B, 1 \+ k, \.\.\.\)"):
        MaskAndSeparationLoss()(torch.zeros(logits_shape), torch.zeros(target_shape))


def test_negative_weight_is_rejected():
    with pytest.raises(ValueError, match="separation_weight"):
        MaskAndSeparationLoss(-1.0)


def test_weighted_loss_is_dice_plus_weighted_mean_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=generator)
    mask = (torch.rand(2, 1, 8, 8, generator=generator) > 0.5).float()
    weight = 1 + 10 * torch.rand(2, 1, 8, 8, generator=generator)
    dice = DiceLoss(sigmoid=True, batch=True)(logits, mask)
    pixel_losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    expected = dice + 0.5 * (weight * pixel_losses).sum() / weight.sum()
    loss = DiceAndWeightedBCELoss(0.5)(logits, torch.cat([mask, weight], 1))
    assert loss == pytest.approx(float(expected), rel=1e-6)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, mask)  # unit weights: the plain mean
    unit = DiceAndWeightedBCELoss()(logits, torch.cat([mask, torch.ones_like(mask)], 1))
    assert unit == pytest.approx(float(dice + plain), rel=1e-6)


def test_weighted_loss_pulls_hardest_where_the_weight_is_high():
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    target = torch.stack([torch.zeros(2, 2), torch.tensor([[1.0, 1.0], [1.0, 11.0]])])[None]
    DiceAndWeightedBCELoss(cross_entropy_weight=1.0)(logits, target).backward()
    gradient = logits.grad[0, 0]
    assert gradient[1, 1] > gradient[0, 0] > 0


@pytest.mark.parametrize("logits_shape, target_shape", [((1, 2, 4, 4), (1, 2, 4, 4)), ((1, 1, 4, 4), (1, 1, 4, 4))])
def test_weighted_loss_shape_errors(logits_shape, target_shape):
    with pytest.raises(ValueError, match=r"\(B, 1, \.\.\.\)"):
        DiceAndWeightedBCELoss()(torch.zeros(logits_shape), torch.zeros(target_shape))


def test_weighted_loss_rejects_negative_weight():
    with pytest.raises(ValueError, match="cross_entropy_weight"):
        DiceAndWeightedBCELoss(-1.0)


def random_logits_and_three_channel_target(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 2, 8, 8) logits and a (2, 3, 8, 8) target: a 0/1 mask, loss weights in [1, 11], a separation in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 2, 8, 8, generator=generator)
    mask = (torch.rand(2, 1, 8, 8, generator=generator) > 0.5).float()
    weights = 1 + 10 * torch.rand(2, 1, 8, 8, generator=generator)
    separation = torch.rand(2, 1, 8, 8, generator=generator)
    return logits, torch.cat([mask, weights, separation], 1)


def test_weighted_mask_and_separation_loss_adds_the_separation_term_to_the_line_weighted_mask_loss():
    logits, target = random_logits_and_three_channel_target(seed=0)
    separation = target[:, 2:]
    mask_loss = DiceAndWeightedBCELoss(0.5)(logits[:, :1], target[:, :2])
    cross_entropy = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:], separation)
    loss = WeightedMaskAndSeparationLoss(cross_entropy_weight=0.5, separation_weight=2.0)(logits, target)
    assert loss == pytest.approx(float(mask_loss + 2.0 * cross_entropy), rel=1e-6)


def test_weighted_separation_weights_the_separation_cross_entropy_by_the_loss_weights():
    logits, target = random_logits_and_three_channel_target(seed=1)
    weights, separation = target[:, 1:2], target[:, 2:]
    pixel_losses = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:], separation, reduction="none")
    weighted_mean = (weights * pixel_losses).sum() / weights.sum()
    mask_loss = DiceAndWeightedBCELoss(1.0)(logits[:, :1], target[:, :2])
    loss = WeightedMaskAndSeparationLoss(separation_weight=2.0, weighted_separation=True)(logits, target)
    assert loss == pytest.approx(float(mask_loss + 2.0 * weighted_mean), rel=1e-6)
    # with weights of 1 it is the plain mean: the unweighted loss
    target = target.clone()
    target[:, 1:2] = 1.0
    unweighted = WeightedMaskAndSeparationLoss(weighted_separation=False)(logits, target)
    assert WeightedMaskAndSeparationLoss(weighted_separation=True)(logits, target) == pytest.approx(float(unweighted))


def test_weighted_cross_entropy_ignores_zero_weights():
    logits = torch.tensor([[[[4.0, -4.0]]]])
    target = torch.tensor([[[[1.0, 1.0]]]])
    only_first = weighted_cross_entropy(logits, target, torch.tensor([[[[1.0, 0.0]]]]))
    assert only_first == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-4.0))))


@pytest.mark.parametrize("logits_shape, target_shape", [((1, 1, 4, 4), (1, 3, 4, 4)), ((1, 2, 4, 4), (1, 2, 4, 4))])
def test_weighted_mask_and_separation_loss_shape_errors(logits_shape, target_shape):
    with pytest.raises(ValueError, match=r"target \(B, 2 \+ k, \.\.\.\)"):
        WeightedMaskAndSeparationLoss()(torch.zeros(logits_shape), torch.zeros(target_shape))


def test_weighted_mask_and_separation_loss_fits_every_separation_channel():
    # two offset channels after the mask: the separation term is the cross-entropy over both
    logits = torch.randn(2, 3, 6, 6)
    target = torch.cat([torch.ones(2, 1, 6, 6), torch.full((2, 1, 6, 6), 3.0), torch.rand(2, 2, 6, 6)], dim=1)
    loss = WeightedMaskAndSeparationLoss(separation_weight=0.5, weighted_separation=True)
    mask_only = WeightedMaskAndSeparationLoss(separation_weight=0.0)(logits, target)
    expected = mask_only + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:], target[:, 2:])
    assert float(loss(logits, target)) == pytest.approx(float(expected), rel=1e-5)


def squares_split_by_lines() -> torch.Tensor:
    """(1, 1, 20, 43) mask: three 10x10 squares in a row, split by one-pixel lines at x = 15 and x = 26."""
    mask = torch.zeros(1, 1, 20, 43)
    mask[..., 5:15, 5:15] = mask[..., 5:15, 16:26] = mask[..., 5:15, 27:37] = 1
    return mask
