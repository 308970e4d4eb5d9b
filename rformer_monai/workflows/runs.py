"""Training runs: a folder of their own for each, the weights they start from, the recipe that goes with them,
and the settings they were run with."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from rformer_monai.files import write_atomic
from rformer_monai.networks.weights import CheckpointError, load_weights, read_checkpoint

__all__ = ["LoadPretrainedWeights", "new_run_folder", "pretrained_weights", "save_run_settings", "training_recipe"]

logger = logging.getLogger(__name__)

RUN_FOLDER_FORMAT = "%Y%m%d-%H%M%S"  # a run folder's name: the time it started
SETTINGS_FILENAME = "settings.json"
CHECKPOINTS_FOLDER = "checkpoints"  # the training checkpoints' folder in a run folder (train.json)
RECIPE_KEYS = ("max_epochs", "learning_rate", "lr_schedule")
# --pretrained null on the command line: from scratch ('monai.bundle run' drops an override of None)
NO_WEIGHTS_WORDS = ("none", "null")


def new_run_folder(parent: str | os.PathLike, resume_from: str | None = None) -> str:
    """Create and return a new folder ``<parent>/<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... appended when a run
    started in the same second), so that runs never write into each other's folders; a run resumed from
    ``<run folder>/checkpoints/<file>`` continues in that run folder."""
    if resume_from and Path(resume_from).parent.name == CHECKPOINTS_FOLDER:
        return str(Path(resume_from).parent.parent)
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime(RUN_FOLDER_FORMAT)
    for attempt in range(1, 1000):
        folder = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        logger.info("run folder: %s", folder)
        return str(folder)
    raise FileExistsError(f"{parent}: could not create a new run folder named after {stamp}")


def pretrained_weights(pretrained: str | None, dataset_dir: str | None) -> str | None:
    """The weights a training run starts from: ``pretrained`` when the run trains on a dataset folder
    (a fine-tune), ``None`` (from scratch) when ``pretrained`` is ``None``, ``"null"`` or ``"none"`` (the command
    line's ``--pretrained null``), or there is no ``dataset_dir`` (the synthetic quick-start)."""
    if not dataset_dir or not pretrained or str(pretrained).strip().lower() in NO_WEIGHTS_WORDS:
        return None
    return str(pretrained)


def training_recipe(pretrained: str | None, from_scratch: Mapping[str, Any], fine_tune: Mapping[str, Any]) -> dict:
    """``fine_tune`` when the run starts from ``pretrained`` weights, else ``from_scratch``: each a dict with
    ``max_epochs``, ``learning_rate`` and ``lr_schedule``.

    Raises:
        ValueError: the chosen recipe lacks one of those keys.
    """
    name, recipe = ("fine_tune", fine_tune) if pretrained else ("from_scratch", from_scratch)
    missing = [key for key in RECIPE_KEYS if key not in recipe]
    if missing:
        raise ValueError(f"{name} must give {', '.join(RECIPE_KEYS)}; it lacks {', '.join(missing)}.")
    logger.info("training recipe: %s%s (%s, unless overridden)", name, f" from {pretrained}" if pretrained else "", recipe)
    return dict(recipe)


def _as_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _as_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_run_settings(run_dir: str | os.PathLike, settings: Mapping[str, Any]) -> Path:
    """Write the run's resolved ``settings`` to ``<run_dir>/settings.json`` (values JSON cannot hold, such as a
    device, as text) and return its path."""
    path = Path(run_dir) / SETTINGS_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_as_json(settings), indent=2)
    write_atomic(path, lambda temporary: Path(temporary).write_text(text))
    return path


class LoadPretrainedWeights:
    """Ignite handler that loads the weights a run fine-tunes from into ``network`` when it is attached (before
    the run starts, so that ``--resume_from`` still replaces them), and does nothing when ``checkpoint`` is
    ``None`` (from scratch).

    Args:
        network: the network to initialise (the module, not a DistributedDataParallel wrapper).
        checkpoint: a model file such as the bundle's ``models/model.pt``, or ``None``.
        map_location: where to load tensors.

    Raises:
        CheckpointError: when constructed, if the file is missing, unreadable or made for another network;
            the message says how to train from scratch instead.
    """

    def __init__(self, network: nn.Module, checkpoint: str | None, map_location: str = "cpu") -> None:
        self.network = network
        self.checkpoint = checkpoint
        self.map_location = map_location
        if checkpoint:  # fail before any data is loaded, naming the file
            try:
                read_checkpoint(checkpoint, map_location)
            except CheckpointError as exc:
                raise CheckpointError(f"{exc} (to train from scratch instead: --pretrained null)") from exc

    def attach(self, engine) -> None:
        """Load the weights now (nothing to do without a checkpoint)."""
        if not self.checkpoint:
            return
        try:
            load_weights(self.network, self.checkpoint, self.map_location)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} Or train from scratch: --pretrained null") from exc
        logger.info("fine-tuning from %s", self.checkpoint)
