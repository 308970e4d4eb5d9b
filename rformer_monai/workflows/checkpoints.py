"""Training checkpoints: resuming, atomic checkpoint files, the best model's weights."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointLoader
from torch import nn

from rformer_monai.files import partial_writes, write_atomic
from rformer_monai.networks.weights import MODEL_KEY, CheckpointError, mismatch, read_checkpoint, weights_do_not_fit

__all__ = [
    "AtomicCheckpointWriter",
    "BestModelSaver",
    "ResumeFromCheckpoint",
    "TrainingCheckpointSaver",
]

logger = logging.getLogger(__name__)

TRAINER_KEY = "trainer"


class ResumeFromCheckpoint:
    """Ignite handler that restores a training checkpoint (network, optimizer and the trainer's epoch and
    iteration) when ``checkpoint`` is a path, and does nothing when it is ``None``: resuming is one override.

    Args:
        checkpoint: a checkpoint written by :class:`TrainingCheckpointSaver`, or ``None``.
        load_dict: the objects to restore besides the trainer, e.g. ``{"model": network, "optimizer": optimizer}``;
            the engine this handler is attached to is restored as ``"trainer"``.
        map_location: where to load tensors.
        optional_keys: keys of ``load_dict`` that a checkpoint may lack (those of older versions, e.g. the best
            score of :class:`BestModelSaver`): they are left as they are, with a warning.

    Raises:
        CheckpointError: when constructed, if the checkpoint is missing, unreadable, not a training checkpoint
            (e.g. a bare ``model.pt``) or made for another network.
    """

    def __init__(
        self,
        checkpoint: str | None,
        load_dict: dict,
        map_location: str | torch.device = "cpu",
        optional_keys: Sequence[str] = (),
    ) -> None:
        if checkpoint:  # fail early, naming the file
            saved = read_checkpoint(checkpoint, map_location)
            for key in optional_keys:
                if key in load_dict and key not in saved:
                    logger.warning("%s: holds no %r (written by an older version); starting it afresh", checkpoint, key)
                    load_dict = {name: value for name, value in load_dict.items() if name != key}
            absent = [key for key in (*load_dict, TRAINER_KEY) if key not in saved]
            if absent:
                raise CheckpointError(
                    f"{checkpoint}: not a training checkpoint (it holds no {', '.join(absent)}): resume from a file "
                    "that training writes to <output_dir>/checkpoints/, such as checkpoint_epoch=<N>.pt"
                )
            network = load_dict.get(MODEL_KEY)
            if isinstance(network, nn.Module) and mismatch(network, saved[MODEL_KEY]) is not None:
                raise weights_do_not_fit(network, saved[MODEL_KEY], checkpoint)
        self.checkpoint = checkpoint
        self.load_dict = load_dict
        self.map_location = map_location

    def attach(self, engine) -> None:
        """Restore the checkpoint when the engine starts (nothing to do without a checkpoint)."""
        if not self.checkpoint:
            return
        logger.info("resuming from %s", self.checkpoint)
        load_dict = {**self.load_dict, TRAINER_KEY: engine}
        CheckpointLoader(load_path=str(self.checkpoint), load_dict=load_dict, map_location=self.map_location).attach(
            engine
        )


class AtomicCheckpointWriter(BaseSaveHandler):
    """Ignite save handler that writes checkpoints atomically (temporary file, then rename) and removes the
    checkpoints it replaces only after the new one is complete.

    Ignite's ``Checkpoint`` asks to remove the oldest file before it saves the newest; done in that order,
    a process killed during the save would leave no checkpoint at all. Here removals wait until the next
    save has succeeded, so the folder always holds at least one complete checkpoint. Files get the
    permissions ``open()`` would give them (ignite's own atomic ``DiskSaver`` leaves them private).

    Args:
        dirname: folder of the checkpoints (created when needed).
    """

    def __init__(self, dirname: str | os.PathLike) -> None:
        self.dirname = Path(dirname)
        self._pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        for leftover in partial_writes(self.dirname / filename):  # of a run killed while saving this file
            leftover.unlink(missing_ok=True)
        write_atomic(self.dirname / filename, lambda temporary: torch.save(checkpoint, temporary))
        pending, self._pending_removals = self._pending_removals, []
        for old in pending:
            if old != filename:
                (self.dirname / old).unlink(missing_ok=True)

    def remove(self, filename: str) -> None:
        """Remove ``filename`` once the next checkpoint has been written."""
        self._pending_removals.append(filename)


BEST_MODEL_FILENAME = "model.pt"
SAVED_KEY = "_saved"  # ignite's Checkpoint state: [(score, filename)] of the files it keeps
BEST_EPOCH_KEY = "best_metric_epoch"  # the epoch of the best score, as MONAI's evaluator records it


class BestModelSaver:
    """Save the weights that score best on the evaluator's key metric (higher is better) as one file,
    written atomically (see :class:`AtomicCheckpointWriter`): a run killed while a new best is being saved
    keeps the previous best model complete. MONAI's ``CheckpointSaver`` with ``key_metric_filename``
    deletes the previous file and then writes the new one in place, so such a run can be left with no
    model or a truncated one.

    Args:
        save_dir: folder of the model file.
        save_dict: what to save, e.g. ``{"model": network}``; a single object is saved as its bare state
            dict (the model zoo's ``models/model.pt``).
        filename: name of the model file.
        key_metric_name: the metric to rank by; None for the evaluator's ``key_metric_name``.
    """

    def __init__(
        self, save_dir: str, save_dict: dict, filename: str = BEST_MODEL_FILENAME, key_metric_name: str | None = None
    ) -> None:
        self.save_dir = save_dir
        self.save_dict = save_dict
        self.filename = filename
        self.key_metric_name = key_metric_name
        self._best = Checkpoint(
            self.save_dict,
            AtomicCheckpointWriter(self.save_dir),
            filename_pattern=self.filename,
            score_function=self._score,
            n_saved=1,
        )
        self._evaluator: Engine | None = None

    @property
    def best_score(self) -> float | None:
        """The key metric of the saved best model; ``None`` before the first validation."""
        saved = self._best.state_dict()[SAVED_KEY]
        return float(saved[0][0]) if saved else None

    def state_dict(self) -> dict:
        """The best score so far and its file, for :class:`TrainingCheckpointSaver` to keep in the training
        checkpoint: a resumed run replaces the best model only with a better one."""
        saved = [(float(priority), str(name)) for priority, name in self._best.state_dict()[SAVED_KEY]]
        epoch = getattr(getattr(self._evaluator, "state", None), "best_metric_epoch", -1)
        return {SAVED_KEY: saved, BEST_EPOCH_KEY: int(epoch)}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Continue from the best score of a training checkpoint (see :meth:`state_dict`)."""
        self._best.load_state_dict({SAVED_KEY: [tuple(item) for item in state_dict[SAVED_KEY]]})
        if self.best_score is None:
            return
        epoch = int(state_dict.get(BEST_EPOCH_KEY, -1))
        state = getattr(self._evaluator, "state", None)
        if state is not None:  # MONAI's own best-metric record (the epoch log's "best"), as the model file's
            state.best_metric, state.best_metric_epoch = self.best_score, epoch
        logger.info("best score so far %.4f (epoch %d), from the checkpoint", self.best_score, epoch)

    def _score(self, evaluator: Engine) -> float:
        name = self.key_metric_name or getattr(evaluator.state, "key_metric_name", None)
        if name is None or name not in evaluator.state.metrics:
            raise ValueError(f"the evaluator computed no key metric {name!r} to choose the best model by.")
        return float(evaluator.state.metrics[name])

    def attach(self, engine: Engine) -> None:
        """Save after every evaluation (epoch of ``engine``) whose key metric beats the best so far."""
        self._evaluator = engine
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._best)


INTERVAL_SCORE_NAME = "epoch"
FINAL_FILENAME = "checkpoint_final.pt"


class TrainingCheckpointSaver:
    """Save the latest training state (network, optimizer and the trainer itself) every ``save_interval``
    epochs as ``checkpoint_epoch=<N>.pt``, keeping the newest ``n_saved`` files, plus ``checkpoint_final.pt``
    when training ends (or stops on an exception).

    Every file is written atomically (see :class:`AtomicCheckpointWriter`): a run killed at any moment
    leaves complete checkpoints only, and resuming from the newest one is one override
    (``--resume_from``, see :class:`ResumeFromCheckpoint`).

    The trainer joins ``save_dict`` when the handler is attached, so configs need not reference the
    trainer from its own handler list.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: objects to save besides the trainer, e.g. ``{"model": network, "optimizer": optimizer}``.
        save_interval: epochs between checkpoints.
        n_saved: how many interval checkpoints to keep.
    """

    def __init__(self, save_dir: str, save_dict: dict, save_interval: int = 1, n_saved: int = 1) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1, got {save_interval}.")
        if n_saved < 1:
            raise ValueError(f"n_saved must be >= 1, got {n_saved}.")
        self.save_dir = save_dir
        self.save_dict = save_dict
        self.save_interval = save_interval
        self.n_saved = n_saved

    def attach(self, engine: Engine) -> None:
        """Save every ``save_interval`` epochs and at the end; ``save_dict`` gets ``engine`` as ``"trainer"``."""
        to_save = {**self.save_dict, TRAINER_KEY: engine}
        interval = Checkpoint(
            to_save,
            AtomicCheckpointWriter(self.save_dir),
            score_function=lambda trainer: trainer.state.epoch,
            score_name=INTERVAL_SCORE_NAME,
            n_saved=self.n_saved,
        )
        final = Checkpoint(to_save, AtomicCheckpointWriter(self.save_dir), filename_pattern=FINAL_FILENAME, n_saved=1)

        def save_final(trainer: Engine) -> None:
            final(trainer)
            logger.info("saved the final checkpoint %s", Path(self.save_dir) / FINAL_FILENAME)

        def save_final_and_raise(trainer: Engine, exc: Exception) -> None:
            save_final(trainer)
            raise exc

        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), interval)
        engine.add_event_handler(Events.COMPLETED, save_final)
        engine.add_event_handler(Events.EXCEPTION_RAISED, save_final_and_raise)
