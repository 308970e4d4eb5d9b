"""The bundle's own network at test size, for the inference, robustness and sharing tests: built from the
bundle's ``network_def`` (its output channels included) with small channel overrides."""

from __future__ import annotations

from pathlib import Path

import torch
from monai.bundle import ConfigParser

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "residualformer_sem"
INFERENCE_CONFIG = BUNDLE / "configs" / "inference.json"
TINY_NETWORK = {
    "network_def#channels": [4, 8, 16, 32],
    "network_def#decoder_channels": 8,
    "network_def#fusion_stride": 4,
}
"""Overrides that shrink the bundle's network (the fusion stride 4 divides 64x64 windows)."""
TINY_RUN = {"roi_size": [64, 64], "num_workers": 0, "device": "cpu", "sw_batch_size": 2, "pretrained": "null"}
"""Overrides of a bundle run that suit the tiny network on CPU (trained from scratch: the shipped weights do not fit it)."""


def tiny_network(config: Path = INFERENCE_CONFIG, seed: int = 0) -> torch.nn.Module:
    """The ``network_def`` of ``config`` with :data:`TINY_NETWORK` applied and seeded random weights, in eval mode."""
    parser = ConfigParser()
    parser.read_config(str(config))
    for key, value in TINY_NETWORK.items():
        parser[key] = value
    torch.manual_seed(seed)
    return parser.get_parsed_content("network_def").eval()
