"""Residual convolutional encoder of the ResidualFormer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
from monai.networks.layers import Conv, Pool, get_act_layer
from torch import nn

from rformer_monai.networks.blocks import (
    PROJECTION_KERNEL_SIZE,
    ResidualBlock,
    _check_channel_tuple,
    _check_positive_int,
    _check_spatial_dims,
)

__all__ = ["ResidualEncoder"]

POOL_FACTOR = 2
"""Down-sampling factor of the max-pooling between two residual blocks."""


class ResidualEncoder(nn.Module):
    """Pyramid of residual blocks separated by 2x2 max-pooling.

    A 1x1 convolution stem (plus activation) maps the input to ``channels[0]``; block 0 runs at
    full resolution and block ``i`` maps ``channels[i - 1]`` to ``channels[i]`` at ``1 / 2**i`` of
    the input resolution.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        channels: width of each block's output, one entry per pyramid level.
        act: activation as a MONAI ``(name, kwargs)`` tuple or name.
        norm: normalisation inside the residual blocks as a MONAI ``(name, kwargs)`` tuple or name;
            None for no normalisation.

    Attributes:
        out_channels: width of each returned feature map.
        output_stride: down-sampling factor of the coarsest feature map, ``2**(len(channels) - 1)``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256),
        act: tuple | str = ("relu", {"inplace": True}),
        norm: tuple | str | None = None,
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check_positive_int("in_channels", in_channels)
        channels = _check_channel_tuple("channels", channels)
        self.out_channels: tuple[int, ...] = channels
        self.output_stride: int = POOL_FACTOR ** (len(channels) - 1)
        self.stem = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](in_channels, channels[0], kernel_size=PROJECTION_KERNEL_SIZE),
            get_act_layer(name=act),
        )
        block_inputs = (channels[0],) + channels[:-1]
        self.blocks = nn.ModuleList(
            ResidualBlock(spatial_dims, block_in, block_out, act=act, norm=norm)
            for block_in, block_out in zip(block_inputs, channels)
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=POOL_FACTOR, stride=POOL_FACTOR)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Compute the feature pyramid.

        Args:
            x: input of shape ``(B, in_channels, *spatial)``; each spatial side should be divisible
                by ``output_stride``.

        Returns:
            ``len(channels)`` tensors; entry ``i`` has shape ``(B, channels[i], *(spatial / 2**i))``.
        """
        features: List[torch.Tensor] = []
        x = self.stem(x)
        for level, block in enumerate(self.blocks):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            features.append(x)
        return features
