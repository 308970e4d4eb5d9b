"""Test-time augmentation: the network's logits averaged over flips and 90-degree rotations of each window.

:class:`DihedralTTA` wraps a network, so it works wherever the network does: inside MONAI's sliding window
(every window is augmented, so block streaming still matches whole-image inference), in the bundle's inference
and evaluation with its ``tta`` setting (``--tta dihedral``; :func:`with_tta`), and in
``python -m rformer_monai.inference --tta``. It costs one forward pass per transform (8 for
``"dihedral"``, 4 for ``"flips"``).
"""

from __future__ import annotations

import torch
from torch import nn

TTA_MODES = {"dihedral": 8, "flips": 4}
"""Transform sets: the 8 symmetries of the square (rotations by 0/90/180/270 degrees, each with and without a
horizontal flip), or the 4 flips (none, vertical, horizontal, both)."""
SPATIAL_AXES = (-2, -1)


def _transforms(mode: str) -> list[tuple[int, bool]]:
    """(quarter turns, flip the last axis first) for every transform of ``mode``."""
    if mode == "dihedral":
        return [(turns, flip) for flip in (False, True) for turns in range(4)]
    return [(0, False), (0, True), (2, False), (2, True)]  # a half turn is a flip of both axes


class DihedralTTA(nn.Module):
    """Average a 2-D network's outputs over flips and 90-degree rotations of its input.

    Each transform is applied to the input, the network runs, the inverse transform is applied to its output, and
    the outputs are averaged (in float32; logits are averaged, as nnU-Net does, so a sigmoid follows as before).
    The input's spatial sides may differ (rotations swap them); every side must suit the network.

    Args:
        network: a module mapping (B, C, H, W) to (B, K, H, W).
        mode: ``"dihedral"`` (8 transforms) or ``"flips"`` (4).
    """

    def __init__(self, network: nn.Module, mode: str = "dihedral") -> None:
        super().__init__()
        if mode not in TTA_MODES:
            raise ValueError(f"mode must be one of {sorted(TTA_MODES)}, got {mode!r}.")
        self.network = network
        self.mode = mode
        self.transforms = _transforms(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average of ``network`` over the transforms.

        Args:
            x: input of shape (B, C, H, W).

        Returns:
            float32 output of shape (B, K, H, W).
        """
        if x.ndim != len(SPATIAL_AXES) + 2:
            raise ValueError(f"DihedralTTA takes (B, C, H, W) inputs, got shape {tuple(x.shape)}.")
        total = None
        for turns, flip in self.transforms:
            augmented = torch.flip(x, dims=(-1,)) if flip else x
            augmented = torch.rot90(augmented, turns, dims=SPATIAL_AXES)
            output = torch.rot90(self.network(augmented), -turns, dims=SPATIAL_AXES)
            output = (torch.flip(output, dims=(-1,)) if flip else output).float()
            total = output if total is None else total + output
        return total / len(self.transforms)


def with_tta(network: nn.Module, mode: str | None = None) -> nn.Module:
    """``network`` itself when ``mode`` is None, else ``DihedralTTA(network, mode)``.

    The bundle's ``tta`` setting (null, ``"dihedral"`` or ``"flips"``) switches augmentation this way:
    ``"network": "$rformer_monai.inference.with_tta(@trained_network, @tta)"``.
    """
    return network if mode is None else DihedralTTA(network, mode)
