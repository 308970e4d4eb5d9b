"""Random draws that depend on the seed and the epoch only, so that a resumed run repeats an uninterrupted one.

``set_determinism(seed)`` at start-up fixes the first epoch, but later epochs draw from generators that
have been running since then (the shuffling, the workers' seeds, the random crops and augmentations),
and a run resumed from a checkpoint starts those generators afresh. :class:`ReseedEachEpoch` seeds them
again at the start of every epoch from ``(seed, epoch)``: epoch N draws the same whether the run began
at epoch 1 or resumed at epoch N.
"""

from __future__ import annotations

import logging

import numpy as np
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd
from monai.utils import set_determinism

logger = logging.getLogger(__name__)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for ``epoch`` of a run seeded with ``seed`` (well mixed: neighbouring epochs differ)."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}.")
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class ReseedEachEpoch:
    """Ignite handler: at the start of every epoch, seed Python, NumPy and torch, and the random transforms of
    the trainer's dataset, from ``(seed, epoch)``.

    The data loader's shuffling and its workers' seeds are drawn from torch's generator when the epoch's
    iterator is made, after this handler has run; with ``num_workers=0`` the dataset's transforms run in
    this process, so their random states are set here as well.

    Args:
        seed: the run's seed (the bundle's ``seed``).
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
        self.seed = int(seed)

    def attach(self, engine: Engine) -> None:
        """Reseed when each of ``engine``'s epochs starts."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.reseed)

    def reseed(self, engine: Engine) -> None:
        """Seed every generator for ``engine.state.epoch``."""
        seed = epoch_seed(self.seed, engine.state.epoch)
        set_determinism(seed=seed)
        dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
        if dataset is not None:
            set_rnd(dataset, seed)
        logger.debug("epoch %d: random generators seeded with %d", engine.state.epoch, seed)
