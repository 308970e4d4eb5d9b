"""The line-maximum loss: the brightest pixel of each line between touching particles."""

from __future__ import annotations

import pytest
import torch

from research.losses import LineMaximumLoss, line_maximum_loss
from rformer_monai.losses import WeightedMaskAndSeparationLoss


def squares_split_by_lines() -> torch.Tensor:
    """(1, 1, 20, 43) mask: three 10x10 squares in a row, split by one-pixel lines at x = 15 and x = 26."""
    mask = torch.zeros(1, 1, 20, 43)
    mask[..., 5:15, 5:15] = mask[..., 5:15, 16:26] = mask[..., 5:15, 27:37] = 1
    return mask


def test_line_maximum_loss_is_the_mean_cross_entropy_of_each_lines_brightest_logit():
    mask = squares_split_by_lines()
    logits = torch.full_like(mask, -5.0)
    logits[..., 8, 15] = 2.0  # one bright pixel on the first line
    logits[..., 9, 30] = 9.0  # inside a particle: not on a line
    expected = (torch.nn.functional.softplus(torch.tensor(2.0)) + torch.nn.functional.softplus(torch.tensor(-5.0))) / 2
    assert line_maximum_loss(logits, mask) == pytest.approx(float(expected), rel=1e-6)


def test_line_maximum_loss_pulls_the_brightest_line_pixel_alone():
    mask = squares_split_by_lines()
    logits = torch.full_like(mask, -5.0)
    logits[..., 8, 15] = 2.0
    logits[..., 10, 26] = -1.0
    logits.requires_grad_(True)
    line_maximum_loss(logits, mask).backward()
    assert torch.argwhere(logits.grad[0, 0]).tolist() == [[8, 15], [10, 26]]
    assert (logits.grad[0, 0, 8, 15] > logits.grad[0, 0, 10, 26] > 0).item()  # the brighter, the harder


def test_line_maximum_loss_is_zero_without_touching_particles():
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    loss = line_maximum_loss(logits, torch.zeros(2, 1, 8, 8))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_line_maximum_loss_adds_the_line_term_to_the_bundle_loss():
    mask = squares_split_by_lines()
    logits = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))
    three_channels = torch.cat([logits, logits], 1), torch.cat([mask, torch.ones_like(mask), mask], 1)
    combined = LineMaximumLoss(line_maximum_weight=0.5)(*three_channels)
    expected = WeightedMaskAndSeparationLoss()(*three_channels) + 0.5 * line_maximum_loss(logits, mask)
    assert combined == pytest.approx(float(expected), rel=1e-6)


def test_line_maximum_weight_must_not_be_negative():
    with pytest.raises(ValueError, match="line_maximum_weight"):
        LineMaximumLoss(line_maximum_weight=-0.1)
