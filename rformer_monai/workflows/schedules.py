"""Learning-rate schedules of the bundle's training, chosen by name (``lr_schedule``)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler

LR_SCHEDULES = ("constant", "cosine")


def _unchanged(epoch: int) -> float:
    return 1.0


def learning_rate_scheduler(optimizer: Optimizer, schedule: str, max_epochs: int) -> LRScheduler:
    """A scheduler stepped once per epoch: ``"constant"`` keeps the optimiser's learning rate (the paper's Adam),
    ``"cosine"`` lowers it along half a cosine to 0 after ``max_epochs`` epochs, so that the last epochs make
    small steps and the final weights are not one noisy draw of a large step size.

    Raises:
        ValueError: an unknown ``schedule`` or ``max_epochs`` below 1.
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}.")
    if schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max_epochs)
    if schedule == "constant":
        return LambdaLR(optimizer, _unchanged)
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}.")
