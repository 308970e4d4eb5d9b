"""The network, sliding-window inferer and settings of a bundle's inference config, for block streaming."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from torch import nn

INFERENCE_CONFIG = Path("configs") / "inference.json"


@dataclass
class BundleInference:
    """What :func:`~rformer_monai.inference.segment_large_micrograph` needs from a bundle's inference config."""

    network: nn.Module
    inferer: Any
    device: torch.device
    amp: bool
    intensity: str
    crop_bottom: int | None
    threshold: float


def load_bundle_inference(
    bundle_root: str | os.PathLike,
    config_file: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    override: Mapping[str, Any] | None = None,
) -> BundleInference:
    """Build the trained network and the inferer from a bundle's configs, with overrides, as ``monai.bundle run``.

    Only the keys used here are parsed (``network``, ``inferer``, ``device``, ``amp``, ``intensity``,
    ``crop_bottom``, ``threshold``); the bundle's data loading and evaluator are not built.

    Args:
        bundle_root: the bundle folder.
        config_file: config file(s) merged in order; default ``<bundle_root>/configs/inference.json``.
        override: ``{key: value}`` set after reading, e.g. ``{"ckpt_path": "...", "network_def#fusion_stride": 4}``.

    Raises:
        CheckpointError: the weights are missing or do not fit the network.
    """
    bundle_root = Path(bundle_root)
    files = [bundle_root / INFERENCE_CONFIG] if config_file is None else config_file
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    for file in files:
        if not Path(file).is_file():
            raise FileNotFoundError(f"{file}: config file not found.")
    parser = ConfigParser()
    parser.read_config([str(file) for file in files])
    parser["bundle_root"] = str(bundle_root)
    for key, value in (override or {}).items():
        parser[key] = value
    return BundleInference(
        network=_parsed(parser, "network").eval(),
        inferer=_parsed(parser, "inferer"),
        device=torch.device(_parsed(parser, "device")),
        amp=bool(_parsed(parser, "amp")),
        intensity=_parsed(parser, "intensity"),
        crop_bottom=_parsed(parser, "crop_bottom"),
        threshold=float(_parsed(parser, "threshold")),
    )


def _parsed(parser: ConfigParser, key: str) -> Any:
    """``parser.get_parsed_content(key)``, re-raising the user error (a missing checkpoint, a bad value) that
    MONAI wraps in ``RuntimeError("Failed to evaluate ...")``."""
    try:
        return parser.get_parsed_content(key)
    except RuntimeError as exc:
        cause = exc
        while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError)):  # CheckpointError is a ValueError
            raise cause from exc
        raise


def parse_override(text: str) -> tuple[str, object]:
    """A command-line override ``KEY=VALUE`` as ``(key, value)``, the value read as JSON where it parses
    (``network_def#fusion_stride=4``, ``roi_size=[128,128]``) and kept as a string otherwise.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not of the form ``KEY=VALUE``; argparse shows the message.
    """
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"override must look like KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
