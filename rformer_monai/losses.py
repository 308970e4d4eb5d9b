"""Losses for networks with a separation output beside the particle mask."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn

from rformer_monai.transforms.dictionary import SEPARATION_CHANNELS

__all__ = ["MaskAndSeparationLoss"]


class MaskAndSeparationLoss(nn.Module):
    """The paper's Dice loss on the particle channel plus binary cross-entropy on the separation channel.

    Dice (over the batch, on the sigmoid of the logits) suits the particle mask; the separation target is
    thin or soft (a band or a border-proximity map, see :class:`rformer_monai.transforms.SeparationBand`),
    where a Dice loss settles on a diffuse prediction over whole particles, so it is fitted per pixel.

    Args:
        separation_weight: weight of the separation term.
    """

    def __init__(self, separation_weight: float = 1.0) -> None:
        super().__init__()
        if separation_weight < 0:
            raise ValueError(f"separation_weight must be >= 0, got {separation_weight}.")
        self.separation_weight = separation_weight
        self.dice = DiceLoss(sigmoid=True, batch=True)
        self.cross_entropy = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, 2, *spatial) against ``target`` (B, 2, *spatial): mask, separation in [0, 1]."""
        if logits.shape[1] != SEPARATION_CHANNELS or target.shape != logits.shape:
            raise ValueError(
                f"logits and target must both be (B, {SEPARATION_CHANNELS}, ...) of one shape, "
                f"got {tuple(logits.shape)} and {tuple(target.shape)}."
            )
        mask_loss = self.dice(logits[:, :1], target[:, :1])
        separation_loss = self.cross_entropy(logits[:, 1:], target[:, 1:])
        return mask_loss + self.separation_weight * separation_loss
