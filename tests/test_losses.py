"""The loss of networks with a separation output."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss

from rformer_monai.losses import MaskAndSeparationLoss


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
    with pytest.raises(ValueError, match=r"\(B, 2, \.\.\.\)"):
        MaskAndSeparationLoss()(torch.zeros(logits_shape), torch.zeros(target_shape))


def test_negative_weight_is_rejected():
    with pytest.raises(ValueError, match="separation_weight"):
        MaskAndSeparationLoss(-1.0)
