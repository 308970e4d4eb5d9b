"""Test-time augmentation by orientation: a 2D network's outputs averaged over the eight flips and
90-degree rotations of its input.

A particle is a particle whichever way up the micrograph lies, so each orientation is an equally valid
prediction; their mean is smoother and less dependent on where a window cuts a particle. Outputs are
averaged before any activation (logits, or a regression channel), each mapped back to the input's
orientation first.
"""

from __future__ import annotations

import torch
from torch import nn

from rformer_monai.engines.settings import as_bool

ORIENTATIONS = 8  # the symmetries of a square: 4 rotations, each with and without a mirror
SPATIAL_AXES = (-2, -1)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """``image`` (..., h, w) in one of the :data:`ORIENTATIONS`: mirrored left-right when ``orientation`` is
    odd, then rotated by ``orientation // 2`` quarter turns."""
    if orientation % 2:
        image = torch.flip(image, dims=SPATIAL_AXES[1:])
    return torch.rot90(image, orientation // 2, dims=SPATIAL_AXES)


def restore_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Undo :func:`orient`: ``restore_orientation(orient(x, k), k)`` is ``x``."""
    image = torch.rot90(image, -(orientation // 2), dims=SPATIAL_AXES)
    if orientation % 2:
        image = torch.flip(image, dims=SPATIAL_AXES[1:])
    return image


class OrientationAveraged(nn.Module):
    """Wrap a 2D dense-prediction network so that its output is the mean over the input's eight orientations.

    Eight forward passes per call. Any input shape the network takes works: rotated non-square inputs
    reach the network transposed (the network must accept (w, h) as well as (h, w)).

    Args:
        network: maps (B, C, h, w) to (B, C', h, w).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C', h, w): the network's outputs averaged over the orientations."""
        total = None
        for orientation in range(ORIENTATIONS):
            output = restore_orientation(self.network(orient(inputs, orientation)), orientation)
            total = output if total is None else total + output
        return total / ORIENTATIONS


def with_test_time_orientations(network: nn.Module, enabled: bool | str) -> nn.Module:
    """``network`` wrapped in :class:`OrientationAveraged` when ``enabled`` (a bundle's switch: ``True``, or
    ``"true"`` from the command line), else unchanged.

    Raises:
        SettingsError: ``enabled`` is not a yes/no value.
    """
    return OrientationAveraged(network) if as_bool(enabled, "test_time_orientations") else network
