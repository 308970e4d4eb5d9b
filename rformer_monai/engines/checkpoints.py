"""Loading trained weights and resuming training, with errors that say what is wrong with the checkpoint."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from monai.handlers import CheckpointLoader, CheckpointSaver
from torch import nn

logger = logging.getLogger(__name__)

MODEL_KEY = "model"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or made for another network; the message names the file."""


def read_checkpoint(checkpoint_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint file safely (``weights_only=True``), naming the file in every error."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found. Train the bundle first (models/model.pt is written by training) "
            "or pass --ckpt_path to a trained model."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(checkpoint).__name__}")
    return checkpoint


def load_weights(
    network: nn.Module, checkpoint_path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Load trained weights into ``network`` and return it.

    Accepts a bare state dict (the model zoo's ``models/model.pt``) or a training checkpoint holding
    one under ``"model"``.

    Raises:
        CheckpointError: the file is missing or corrupt, or its weights do not fit ``network``
            (another architecture or other constructor arguments).
    """
    checkpoint = read_checkpoint(checkpoint_path, map_location)
    state_dict = checkpoint.get(MODEL_KEY, checkpoint)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        expected, found = set(network.state_dict()), set(state_dict)
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else "tensor shapes differ"
        raise CheckpointError(
            f"{checkpoint_path}: weights do not fit {type(network).__name__} ({detail}). The checkpoint was "
            "trained with another architecture or other network arguments (channels, decoder_channels, "
            "fusion_stride): use the network_def it was trained with."
        ) from exc
    logger.info("loaded weights from %s", checkpoint_path)
    return network


TRAINER_KEY = "trainer"


class ResumeFromCheckpoint:
    """Ignite handler that restores a training checkpoint (network, optimizer and the trainer's epoch and
    iteration) when ``checkpoint`` is a path, and does nothing when it is ``None``: resuming is one override.

    Args:
        checkpoint: a checkpoint written by :class:`TrainingCheckpointSaver`, or ``None``.
        load_dict: the objects to restore besides the trainer, e.g. ``{"model": network, "optimizer": optimizer}``;
            the engine this handler is attached to is restored as ``"trainer"``.
        map_location: where to load tensors.
    """

    def __init__(self, checkpoint: str | None, load_dict: dict, map_location: str | torch.device = "cpu") -> None:
        if checkpoint:
            read_checkpoint(checkpoint, map_location)  # fail early, naming the file
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


class TrainingCheckpointSaver:
    """Save the latest training state (network, optimizer and the trainer itself) every ``save_interval``
    epochs, keeping the newest ``n_saved`` files, plus a final checkpoint at the end of training.

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
        self.save_dir = save_dir
        self.save_dict = save_dict
        self.save_interval = save_interval
        self.n_saved = n_saved

    def attach(self, engine) -> None:
        """Attach a MONAI ``CheckpointSaver`` whose ``save_dict`` includes ``engine``."""
        CheckpointSaver(
            save_dir=self.save_dir,
            save_dict={**self.save_dict, TRAINER_KEY: engine},
            save_interval=self.save_interval,
            n_saved=self.n_saved,
            save_final=True,
            final_filename="checkpoint_final.pt",
        ).attach(engine)
