"""A network that sees its input at a finer grid than the micrograph's and answers on the micrograph's grid."""

from __future__ import annotations

import torch
from monai.networks.layers import Pool
from torch import nn
from torch.nn import functional

from rformer_monai.networks.blocks import _check_positive_int, _check_spatial_dims

__all__ = ["UpsampledInput"]

INTERPOLATION_MODES = {2: "bilinear", 3: "trilinear"}


class UpsampledInput(nn.Module):
    """Runs ``network`` on the input up-sampled ``scale_factor`` times and averages its logits over each
    ``scale_factor``-wide block, so that they come back on the input's grid.

    A particle 10 px across and the one-pixel line between two touching ones then span ``scale_factor``
    times as many pixels of the network's feature maps, for ``scale_factor ** spatial_dims`` times the
    computation per input pixel. Losses, labels, sliding windows and the particle step stay on the
    micrograph's own grid.

    Args:
        network: the wrapped network, taking and returning ``(B, C, *spatial)``.
        scale_factor: the integer up-sampling factor of each spatial side.
        spatial_dims: number of spatial dimensions (2 or 3).
    """

    def __init__(self, network: nn.Module, scale_factor: int = 2, spatial_dims: int = 2) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check_positive_int("scale_factor", scale_factor)
        self.network = network
        self.scale_factor: float = float(scale_factor)
        self.interpolation: str = INTERPOLATION_MODES[spatial_dims]
        self.average = Pool[Pool.AVG, spatial_dims](kernel_size=scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(B, out_channels, *spatial)`` for ``x`` of shape ``(B, in_channels, *spatial)``; each
        side of ``x``, times ``scale_factor``, must suit the wrapped network."""
        fine = functional.interpolate(x, scale_factor=self.scale_factor, mode=self.interpolation, align_corners=False)
        return self.average(self.network(fine))
