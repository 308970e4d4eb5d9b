"""Loading trained weights into a network, with errors that name the file and say what is wrong with it."""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointError", "load_weights", "read_checkpoint"]

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or made for another network; the message names the file."""


MODEL_KEY = "model"
WEIGHTS_ONLY_REFUSAL = "Weights only load failed"
"""How ``torch.load(weights_only=True)`` begins its message for any file it does not load (damaged ones too)."""
UNSAFE_GLOBAL = re.compile(r"\bGLOBAL\b")
"""What the message holds when the file names a Python function or class to call ("unsupported GLOBAL
posix.system"), rather than bytes that are not a pickle at all ("Unsupported operand 110")."""


def is_unsafe_refusal(exc: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a file because unpickling it would run code, rather
    than because the file is damaged."""
    message = str(exc)
    return (
        isinstance(exc, pickle.UnpicklingError)
        and WEIGHTS_ONLY_REFUSAL in message
        and UNSAFE_GLOBAL.search(message) is not None
    )


def read_checkpoint(checkpoint_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint file safely (``weights_only=True``), naming the file in every error."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint not found. Pass --ckpt_path to a trained model (the bundle ships models/model.pt; "
            "a training run writes <run folder>/model.pt)."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        if is_unsafe_refusal(exc):
            raise CheckpointError(
                f"{path}: refused as unsafe: it holds Python objects that would run code when loaded, not only "
                "tensors. Use weights written by this bundle (models/model.pt, runs/checkpoints/). Only if you trust "
                "the file's source: load it once with torch.load(path, weights_only=False) and save only the "
                "network's tensors (its state_dict) with torch.save."
            ) from exc
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
        raise weights_do_not_fit(network, state_dict, checkpoint_path) from exc
    logger.info("loaded weights from %s", checkpoint_path)
    return network


def mismatch(network: nn.Module, state_dict: Mapping) -> str | None:
    """How ``state_dict`` differs from ``network``'s own (names, then shapes); ``None`` where it fits."""
    expected = network.state_dict()
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    if any(tuple(expected[name].shape) != tuple(getattr(state_dict[name], "shape", ())) for name in expected):
        return "tensor shapes differ"
    return None


def weights_do_not_fit(network: nn.Module, state_dict: Mapping, checkpoint_path: str | os.PathLike) -> CheckpointError:
    detail = mismatch(network, state_dict) or "tensor shapes differ"
    return CheckpointError(
        f"{checkpoint_path}: weights do not fit {type(network).__name__} ({detail}). The checkpoint was "
        "trained with another architecture or other network arguments (out_channels, channels, "
        "decoder_channels, fusion_stride): use the network_def it was trained with."
    )
