"""ResidualFormer: residual encoder + SegFormer-style decoder for nanoparticle segmentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
from torch import nn

from rformer_monai.networks.blocks import _check_positive_int, _check_spatial_dims
from rformer_monai.networks.decoder import SegFormerDecoder
from rformer_monai.networks.encoder import ResidualEncoder

__all__ = ["ResidualFormer"]

NON_SPATIAL_DIMS = 2
"""Leading non-spatial dimensions of a network input: batch and channel."""


def _format_shape(shape: List[int]) -> str:
    """Write ``shape`` as a tuple, e.g. ``(250, 250)`` (TorchScript-compatible)."""
    return "(" + ", ".join([str(side) for side in shape]) + ")"


class ResidualFormer(nn.Module):
    """Residual convolutional encoder followed by a SegFormer-style decoder.

    The defaults are the published layout: four residual stages of widths (32, 64, 128, 256),
    every stage projected to a 256-wide embedding and fused at full resolution, narrowed to 32
    channels before the output convolution. ``fusion_stride`` of 2 or 4 fuses at a coarser grid
    and up-samples the logits, trading boundary detail for speed.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels (logits, one per foreground class).
        channels: width of each encoder stage; the encoder down-samples by 2 between stages.
        decoder_channels: embedding width of the decoder.
        head_channels: width the fused decoder features are narrowed to.
        fusion_stride: down-sampling factor at which the decoder fuses features (power of two,
            at most ``output_stride``).
        act: activation as a MONAI ``(name, kwargs)`` tuple or name.
        encoder_norm: normalisation in the encoder's residual blocks; None for none.
        decoder_norm: normalisation after the decoder's narrowing convolution; None for none.

    Attributes:
        output_stride: every input spatial side must be a multiple of this.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256),
        decoder_channels: int = 256,
        head_channels: int = 32,
        fusion_stride: int = 1,
        act: tuple | str = ("relu", {"inplace": True}),
        encoder_norm: tuple | str | None = None,
        decoder_norm: tuple | str | None = ("batch", {}),
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims)
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        self.spatial_dims: int = spatial_dims
        self.input_ndim: int = spatial_dims + NON_SPATIAL_DIMS
        self.encoder = ResidualEncoder(spatial_dims, in_channels, channels, act=act, norm=encoder_norm)
        self.decoder = SegFormerDecoder(
            spatial_dims,
            self.encoder.out_channels,
            out_channels=out_channels,
            decoder_channels=decoder_channels,
            head_channels=head_channels,
            fusion_stride=fusion_stride,
            act=act,
            norm=decoder_norm,
        )
        self.output_stride: int = self.encoder.output_stride

    def _check_input_shape(self, x: torch.Tensor) -> None:
        """Raise a ValueError unless ``x`` is ``(B, C, *spatial)`` with sides divisible by ``output_stride``."""
        shape: List[int] = list(x.shape)
        if len(shape) != self.input_ndim:
            raise ValueError(
                "input shape "
                + _format_shape(shape)
                + " must have "
                + str(self.input_ndim)
                + " dimensions (B, C, *spatial)."
            )
        spatial: List[int] = shape[len(shape) - self.spatial_dims :]
        stride = self.output_stride
        padded: List[int] = [(side + stride - 1) // stride * stride for side in spatial]
        if padded != spatial:
            raise ValueError(
                "input spatial shape "
                + _format_shape(spatial)
                + " is not divisible by the output stride "
                + str(stride)
                + ": pad it to "
                + _format_shape(padded)
                + " (monai.transforms.DivisiblePad(k="
                + str(stride)
                + "))"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch of images.

        Args:
            x: input of shape ``(B, in_channels, *spatial)``, each spatial side a multiple of
                ``output_stride``.

        Returns:
            Logits (no sigmoid/softmax applied) of shape ``(B, out_channels, *spatial)``.

        Raises:
            ValueError: when ``x`` has the wrong number of dimensions or a spatial side that is not
                a multiple of ``output_stride``.
        """
        self._check_input_shape(x)
        return self.decoder(self.encoder(x))
