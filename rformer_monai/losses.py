"""Losses that teach a network where touching particles separate: a separation output beside the particle
mask, or loss weights on the lines between particles."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn

from rformer_monai.transforms.dictionary import MASK_AND_WEIGHT_CHANNELS

__all__ = [
    "DiceAndWeightedBCELoss",
    "MaskAndSeparationLoss",
    "WeightedMaskAndSeparationLoss",
    "weighted_cross_entropy",
]


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``logits`` against ``target`` in [0, 1], the weighted mean over all pixels (sum of
    weight times loss over the sum of weights); ``weight`` broadcasts against ``target``."""
    pixel_losses = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = weight.expand_as(pixel_losses)
    return (weight * pixel_losses).sum() / weight.sum().clamp_min(torch.finfo(weight.dtype).eps)


class MaskAndSeparationLoss(nn.Module):
    """The paper's Dice loss on the particle channel plus binary cross-entropy on the separation channels.

    Dice (over the batch, on the sigmoid of the logits) suits the particle mask; the separation targets are
    thin or soft (a band, a border-proximity map or centre offsets, see
    :class:`rformer_monai.transforms.SeparationBand`), where a Dice loss settles on a diffuse prediction over
    whole particles, so they are fitted per pixel.

    Args:
        separation_weight: weight of the separation term.
    """

    mask_target_channels = 1  # the target's leading channels that the mask term reads; the separation follows

    def __init__(self, separation_weight: float = 1.0) -> None:
        super().__init__()
        if separation_weight < 0:
            raise ValueError(f"separation_weight must be >= 0, got {separation_weight}.")
        self.separation_weight = separation_weight
        self.mask_loss: nn.Module = DiceLoss(sigmoid=True, batch=True)
        self.cross_entropy = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, 1 + k, *spatial) against ``target`` (B, m + k, *spatial): the mask's m channels
        (:attr:`mask_target_channels`), then the k separation targets in [0, 1]; k >= 1."""
        separation_channels = logits.shape[1] - 1
        target_channels = self.mask_target_channels + separation_channels
        if separation_channels < 1 or target.shape[1] != target_channels or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"logits must be (B, 1 + k, ...), k >= 1, and target (B, {self.mask_target_channels} + k, ...) of "
                f"the same spatial shape, got {tuple(logits.shape)} and {tuple(target.shape)}."
            )
        mask_loss = self.mask_loss(logits[:, :1], target[:, : self.mask_target_channels])
        return mask_loss + self.separation_weight * self.separation_loss(logits, target)

    def separation_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The separation term: cross-entropy of the separation logits against the target's last channels."""
        return self.cross_entropy(logits[:, 1:], target[:, self.mask_target_channels :])


class DiceAndWeightedBCELoss(nn.Module):
    """The paper's Dice loss plus binary cross-entropy weighted per pixel, for a one-channel network.

    The target's second channel holds the weights (:class:`rformer_monai.transforms.SeparationWeight`: high
    on the one-pixel lines between touching particles), which Dice alone all but ignores: they are under
    5 % of the particle area of the BAM masks. The cross-entropy is a weighted mean (sum of weight times
    loss over the sum of weights).

    Args:
        cross_entropy_weight: weight of the cross-entropy term.
    """

    def __init__(self, cross_entropy_weight: float = 1.0) -> None:
        super().__init__()
        if cross_entropy_weight < 0:
            raise ValueError(f"cross_entropy_weight must be >= 0, got {cross_entropy_weight}.")
        self.cross_entropy_weight = cross_entropy_weight
        self.dice = DiceLoss(sigmoid=True, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, 1, *spatial) against ``target`` (B, 2, *spatial): the 0/1 mask, its weights."""
        if logits.shape[1] != 1 or target.shape[1] != MASK_AND_WEIGHT_CHANNELS or target.shape[2:] != logits.shape[2:]:
            raise ValueError(
                f"logits must be (B, 1, ...) and target (B, {MASK_AND_WEIGHT_CHANNELS}, ...) of the same spatial shape, "
                f"got {tuple(logits.shape)} and {tuple(target.shape)}."
            )
        mask, weight = target[:, :1], target[:, 1:]
        return self.dice(logits, mask) + self.cross_entropy_weight * weighted_cross_entropy(logits, mask, weight)


class WeightedMaskAndSeparationLoss(MaskAndSeparationLoss):
    """:class:`MaskAndSeparationLoss` with :class:`DiceAndWeightedBCELoss` on the particle channel: the
    bundle's line-weighted mask loss kept, with separation outputs (such as a distance map normalised per
    particle, or centre offsets) learnt beside it. The target is (B, 2 + k, *spatial): the 0/1 mask, its loss
    weights, the k separation targets in [0, 1].

    Args:
        cross_entropy_weight: weight of the mask's weighted cross-entropy term.
        separation_weight: weight of the separation term.
        weighted_separation: weight the separation term's cross-entropy by the label's loss weights too, so
            that the separation output also learns the lines (and, with balanced weights, the small particles).
    """

    mask_target_channels = MASK_AND_WEIGHT_CHANNELS

    def __init__(
        self,
        cross_entropy_weight: float = 1.0,
        separation_weight: float = 1.0,
        weighted_separation: bool = False,
    ) -> None:
        super().__init__(separation_weight)
        self.mask_loss = DiceAndWeightedBCELoss(cross_entropy_weight)
        self.weighted_separation = weighted_separation

    def separation_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The separation term: cross-entropy of the separation logits against the last target channels,
        weighted by the loss-weight channel when ``weighted_separation``."""
        if not self.weighted_separation:
            return super().separation_loss(logits, target)
        return weighted_cross_entropy(logits[:, 1:], target[:, self.mask_target_channels :], target[:, 1:2])
