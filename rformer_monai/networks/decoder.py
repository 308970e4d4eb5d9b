"""SegFormer-style all-convolutional decoder head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn.functional as F
from monai.networks.layers import Conv, get_act_layer
from torch import nn

from rformer_monai.networks.blocks import (
    PROJECTION_KERNEL_SIZE,
    RESIDUAL_KERNEL_SIZE,
    _check_channel_tuple,
    _check_positive_int,
    _check_spatial_dims,
    _norm_or_identity,
)
from rformer_monai.networks.encoder import POOL_FACTOR

__all__ = ["SegFormerDecoder"]

FUSION_KERNEL_SIZE = RESIDUAL_KERNEL_SIZE
"""Side of the convolution that fuses the concatenated feature maps."""

INTERPOLATION_MODES = {2: "bilinear", 3: "trilinear"}
"""Linear interpolation mode per spatial dimensionality."""


class SegFormerDecoder(nn.Module):
    """Project, resize, concatenate and fuse an encoder's feature pyramid into per-pixel logits.

    Each feature map is projected to ``decoder_channels`` by a 1x1 convolution and linearly
    resized (``align_corners=False``) to the fusion resolution, ``input resolution / fusion_stride``.
    The concatenation goes through a 3x3 convolution + act (back to ``decoder_channels``), a 1x1
    convolution narrowing to ``head_channels`` + norm + act, and a 1x1 convolution to
    ``out_channels``. When ``fusion_stride > 1`` the logits are linearly up-sampled to the input
    resolution.

    Projection and linear resizing commute exactly (interpolation weights sum to one), so a
    feature map finer than the fusion resolution is resized first and projected at the coarser
    size, which gives the same output for fewer operations.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        encoder_channels: width of each encoder feature map; feature ``i`` is expected at
            ``1 / 2**i`` of the input resolution (feature 0 at full resolution).
        out_channels: number of output channels (logits).
        decoder_channels: embedding width each feature map is projected to.
        head_channels: width the fused features are narrowed to before the output convolution.
        fusion_stride: down-sampling factor, relative to the input, at which the features are
            fused; a power of two no larger than the coarsest feature stride.
        act: activation as a MONAI ``(name, kwargs)`` tuple or name.
        norm: normalisation after the narrowing convolution as a MONAI ``(name, kwargs)`` tuple or
            name; None for no normalisation.
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder_channels: Sequence[int],
        out_channels: int = 1,
        decoder_channels: int = 256,
        head_channels: int = 32,
        fusion_stride: int = 1,
        act: tuple | str = ("relu", {"inplace": True}),
        norm: tuple | str | None = ("batch", {}),
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        encoder_channels = _check_channel_tuple("encoder_channels", encoder_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("decoder_channels", decoder_channels)
        _check_positive_int("head_channels", head_channels)
        feature_strides = [POOL_FACTOR**level for level in range(len(encoder_channels))]
        if isinstance(fusion_stride, bool) or fusion_stride not in feature_strides:
            raise ValueError(
                f"fusion_stride must be a power of two no larger than the coarsest feature stride "
                f"{feature_strides[-1]}, i.e. one of {tuple(feature_strides)}; got {fusion_stride!r}."
            )
        self.fusion_stride: int = fusion_stride
        self.interpolation_mode: str = INTERPOLATION_MODES[spatial_dims]
        self.resize_before_projection: List[bool] = [stride < fusion_stride for stride in feature_strides]

        conv_type = Conv[Conv.CONV, spatial_dims]
        self.projections = nn.ModuleList(
            conv_type(width, decoder_channels, kernel_size=PROJECTION_KERNEL_SIZE) for width in encoder_channels
        )
        self.fuse = nn.Sequential(
            conv_type(
                len(encoder_channels) * decoder_channels,
                decoder_channels,
                kernel_size=FUSION_KERNEL_SIZE,
                padding=FUSION_KERNEL_SIZE // 2,
            ),
            get_act_layer(name=act),
        )
        self.narrow = nn.Sequential(
            conv_type(decoder_channels, head_channels, kernel_size=PROJECTION_KERNEL_SIZE),
            _norm_or_identity(norm, spatial_dims, head_channels),
            get_act_layer(name=act),
        )
        self.head = conv_type(head_channels, out_channels, kernel_size=PROJECTION_KERNEL_SIZE)

    def _resize(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        """Linearly resize ``x`` to the spatial ``size`` (a no-op when it already has that size)."""
        if list(x.shape[2:]) == size:
            return x
        return F.interpolate(x, size=size, mode=self.interpolation_mode, align_corners=False)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """Decode a feature pyramid.

        Args:
            features: ``len(encoder_channels)`` tensors; entry ``i`` has shape
                ``(B, encoder_channels[i], *(spatial / 2**i))``, so entry 0 sets the output size.

        Returns:
            Logits of shape ``(B, out_channels, *spatial)``.
        """
        if len(features) != len(self.resize_before_projection):
            raise ValueError(
                "features must hold "
                + str(len(self.resize_before_projection))
                + " feature maps, got "
                + str(len(features))
                + "."
            )
        full_size: List[int] = list(features[0].shape[2:])
        fusion_size: List[int] = [side // self.fusion_stride for side in full_size]
        resized: List[torch.Tensor] = []
        for level, projection in enumerate(self.projections):
            feature = features[level]
            if self.resize_before_projection[level]:
                resized.append(projection(self._resize(feature, fusion_size)))
            else:
                resized.append(self._resize(projection(feature), fusion_size))
        fused = self.narrow(self.fuse(torch.cat(resized, dim=1)))
        logits = self.head(fused)
        return self._resize(logits, full_size)
