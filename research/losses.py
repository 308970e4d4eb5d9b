"""A loss term tried beside the bundle's and not adopted (see docs/results.md): the line-maximum loss, which
pulls down the brightest pixel of each line between touching particles."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rformer_monai.losses import WeightedMaskAndSeparationLoss
from rformer_monai.transforms.array import separation_line_pairs


def line_maximum_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy against 0 of the highest logit on each line between two touching particles of
    ``mask``, the mean over the lines of the batch (0 when no particles touch).

    One pixel above the particle threshold on such a line joins the two particles in the predicted mask,
    however dark the rest of the line; a per-pixel loss hardly sees it (one pixel of the line), this term
    puts the whole line's loss on it (its gradient reaches the brightest pixel of each line alone).

    Args:
        logits: (B, 1, *spatial) particle logits.
        mask: (B, 1, *spatial) 0/1 target mask whose touching particles are split by one-pixel lines.
    """
    pair_maps, pairs_so_far = [], 0
    for image in mask[:, 0].detach().cpu().numpy():
        pairs = separation_line_pairs(image > 0)
        pair_maps.append(np.where(pairs > 0, pairs + pairs_so_far, 0))
        pairs_so_far += int(pairs.max())
    if pairs_so_far == 0:
        return logits.sum() * 0.0  # keeps the graph (and the device) of the logits
    pair_ids = torch.as_tensor(np.stack(pair_maps), device=logits.device)
    on_line = pair_ids > 0
    line_logits = logits[:, 0][on_line]
    highest = line_logits.new_full((pairs_so_far,), -torch.inf).scatter_reduce(
        0, pair_ids[on_line] - 1, line_logits, reduce="amax", include_self=False
    )
    return nn.functional.softplus(highest).mean()


class LineMaximumLoss(WeightedMaskAndSeparationLoss):
    """The bundle's :class:`~rformer_monai.losses.WeightedMaskAndSeparationLoss` plus ``line_maximum_weight``
    times :func:`line_maximum_loss` on the particle channel.

    Args:
        cross_entropy_weight: weight of the mask's weighted cross-entropy term.
        separation_weight: weight of the separation term.
        line_maximum_weight: weight of the line-maximum term (>= 0).
    """

    def __init__(
        self, cross_entropy_weight: float = 1.0, separation_weight: float = 1.0, line_maximum_weight: float = 0.1
    ) -> None:
        super().__init__(cross_entropy_weight, separation_weight)
        if line_maximum_weight < 0:
            raise ValueError(f"line_maximum_weight must be >= 0, got {line_maximum_weight}.")
        self.line_maximum_weight = line_maximum_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The bundle's loss plus the line-maximum term of the particle logits against the target's mask."""
        loss = super().forward(logits, target)
        return loss + self.line_maximum_weight * line_maximum_loss(logits[:, :1], target[:, :1])
