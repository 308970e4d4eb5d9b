"""Start a cross-validation fold from an earlier run's model of the same fold, new output heads and all.

Merged after ``train.json`` by ``research/configs/warm_start.json``: each fold loads the ``model.pt`` that an
earlier ``research.cv run`` trained on the same training images (so no held-out image is seen), keeping every
weight whose name and shape fit the network. A layer with more channels than the earlier one keeps the
earlier channels first (the particle mask, and the distance map normalised to 1 at each particle's centre that a
star-polygon head's object probability resembles) and the rest as initialised.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from research.cv import SPLIT_RECORD_NAME, fold_folder, held_out_images, recorded_split
from rformer_monai.networks.weights import MODEL_KEY, read_checkpoint
from rformer_monai.workflows.checkpoints import BEST_MODEL_FILENAME

logger = logging.getLogger("research.warm_start")


def fold_model(cv_dir: str, fold: int, held_out: Sequence[Mapping[str, Any]]) -> str:
    """The ``model.pt`` of ``fold`` in the earlier CV folder ``cv_dir``, checked to have been trained without
    the images ``held_out`` now (the datalist of this run's held-out images) against its ``split.json``.

    Raises:
        FileNotFoundError: when that fold has no model or no split record.
        ValueError: when it held out other images (another split seed or fold count).
    """
    fold_dir = fold_folder(cv_dir, fold)
    path, split = fold_dir / BEST_MODEL_FILENAME, recorded_split(fold_dir)
    if not path.is_file() or split is None:
        raise FileNotFoundError(f"{fold_dir}: no model and split of fold {fold} to start from (run research.cv run on {cv_dir} first).")
    earlier, now = sorted(split["held_out_images"]), held_out_images(held_out)
    if earlier != now:
        raise ValueError(
            f"{fold_dir / SPLIT_RECORD_NAME}: fold {fold} held out {earlier}, this run holds out {now}: it would "
            "start from a model that saw them."
        )
    return str(path)


def leading_channels(own: torch.Tensor, saved: torch.Tensor) -> torch.Tensor | None:
    """``own`` with its leading block taken from ``saved`` (the earlier output and input channels of a layer
    that has more of either now), when ``saved`` is nowhere larger; None when it does not fit."""
    if own.ndim != saved.ndim or any(earlier > now for earlier, now in zip(saved.shape, own.shape)):
        return None
    merged = own.clone()
    merged[tuple(slice(0, side) for side in saved.shape)] = saved
    return merged


class LoadMatchingWeights:
    """Ignite handler that loads, when it is attached, the weights of ``checkpoint`` whose names and shapes fit
    ``network``, and of those with fewer channels their leading block (:func:`leading_channels`);
    it logs the ones it leaves as initialised.

    Args:
        network: the network to initialise.
        checkpoint: a model file (a state dict, or a checkpoint holding one under ``"model"``).
        map_location: where to load tensors.

    Raises:
        ValueError: when no weight fits (another architecture).
    """

    def __init__(self, network: nn.Module, checkpoint: str, map_location: str = "cpu") -> None:
        self.network = network
        self.checkpoint = checkpoint
        self.map_location = map_location

    def attach(self, engine) -> None:
        """Load the fitting weights now."""
        saved = read_checkpoint(self.checkpoint, self.map_location)
        saved = saved.get(MODEL_KEY, saved)
        own = self.network.state_dict()
        fitting = {name: value for name, value in saved.items() if name in own and own[name].shape == value.shape}
        if not fitting:
            raise ValueError(f"{self.checkpoint}: none of its weights fit the network.")
        widened = {name: leading_channels(own[name], value) for name, value in saved.items() if name in own and name not in fitting}
        widened = {name: value for name, value in widened.items() if value is not None}
        self.network.load_state_dict({**fitting, **widened}, strict=False)
        left = sorted(set(own) - set(fitting) - set(widened))
        logger.info(
            "started from %s; leading channels only: %s; left as initialised: %s",
            self.checkpoint, ", ".join(sorted(widened)) or "none", ", ".join(left) or "none",
        )
