"""Building blocks shared by the ResidualFormer encoder and decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers import Conv, get_act_layer, get_norm_layer
from torch import nn

__all__ = ["ResidualBlock"]

SUPPORTED_SPATIAL_DIMS = (2, 3)
"""Spatial dimensionalities the networks in this package are built for."""

RESIDUAL_KERNEL_SIZE = 3
"""Side of the two convolutions in the residual branch."""

PROJECTION_KERNEL_SIZE = 1
"""Side of the shortcut projection (a pointwise convolution)."""


def _check_spatial_dims(spatial_dims: int) -> None:
    """Raise a ValueError unless ``spatial_dims`` is 2 or 3."""
    if isinstance(spatial_dims, bool) or spatial_dims not in SUPPORTED_SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be one of {SUPPORTED_SPATIAL_DIMS}, got {spatial_dims!r}.")


def _check_positive_int(name: str, value: int) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an int greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def _check_channel_tuple(name: str, value: Sequence[int]) -> tuple[int, ...]:
    """Return ``value`` as a tuple after checking it is a non-empty sequence of positive ints."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {value!r}.")
    for width in value:
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {value!r}.")
    return tuple(value)


def _norm_or_identity(norm: tuple | str | None, spatial_dims: int, channels: int) -> nn.Module:
    """Build the MONAI normalisation layer ``norm`` for ``channels``, or an identity when ``norm`` is None."""
    if norm is None:
        return nn.Identity()
    return get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a residual shortcut.

    The residual branch is ``conv -> [norm] -> act -> conv -> [norm] -> act``; the shortcut is the
    identity when ``in_channels == out_channels`` and a 1x1 convolution otherwise. The output is the
    sum of the two. Spatial size is preserved.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels.
        act: activation as a MONAI ``(name, kwargs)`` tuple or name.
        norm: normalisation as a MONAI ``(name, kwargs)`` tuple or name, placed between each
            convolution and its activation; None for no normalisation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: tuple | str = ("relu", {"inplace": True}),
        norm: tuple | str | None = None,
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        conv_type = Conv[Conv.CONV, spatial_dims]
        padding = RESIDUAL_KERNEL_SIZE // 2
        self.conv1 = conv_type(in_channels, out_channels, kernel_size=RESIDUAL_KERNEL_SIZE, padding=padding)
        self.norm1 = _norm_or_identity(norm, spatial_dims, out_channels)
        self.act1 = get_act_layer(name=act)
        self.conv2 = conv_type(out_channels, out_channels, kernel_size=RESIDUAL_KERNEL_SIZE, padding=padding)
        self.norm2 = _norm_or_identity(norm, spatial_dims, out_channels)
        self.act2 = get_act_layer(name=act)
        self.shortcut: nn.Module
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = conv_type(in_channels, out_channels, kernel_size=PROJECTION_KERNEL_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: input of shape ``(B, in_channels, *spatial)``.

        Returns:
            Tensor of shape ``(B, out_channels, *spatial)``.
        """
        residual = self.act1(self.norm1(self.conv1(x)))
        residual = self.act2(self.norm2(self.conv2(residual)))
        return residual + self.shortcut(x)
