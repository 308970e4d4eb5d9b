"""UpsampledInput: the wrapped network sees the input at a finer grid, the caller gets the input's grid."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from research.networks import UpsampledInput
from rformer_monai.networks import ResidualFormer


class RecordShape(nn.Module):
    """An identity that remembers the shape it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape))
        return x


@pytest.mark.parametrize("spatial_dims, shape", [(2, (2, 1, 12, 20)), (3, (1, 1, 4, 6, 8))])
def test_network_sees_the_finer_grid_and_caller_gets_the_input_grid(spatial_dims, shape):
    inner = RecordShape()
    output = UpsampledInput(inner, scale_factor=2, spatial_dims=spatial_dims)(torch.rand(shape))
    assert inner.seen == [shape[:2] + tuple(2 * side for side in shape[2:])]
    assert output.shape == shape


def test_constant_input_gives_constant_output():
    output = UpsampledInput(RecordShape(), scale_factor=3)(torch.full((1, 1, 9, 6), 0.25))
    assert torch.allclose(output, torch.full_like(output, 0.25))


def test_logits_are_averaged_over_each_block():
    class Checkerboard(nn.Module):
        """+1 and -1 on alternate fine pixels, whatever the input: each 2x2 block averages to 0."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows, columns = torch.meshgrid(torch.arange(x.shape[2]), torch.arange(x.shape[3]), indexing="ij")
            return ((rows + columns) % 2 * 2 - 1).float().expand_as(x)

    output = UpsampledInput(Checkerboard(), scale_factor=2)(torch.rand(1, 1, 5, 7))
    assert torch.equal(output, torch.zeros(1, 1, 5, 7))


def test_wraps_the_residualformer_and_scripts():
    network = UpsampledInput(ResidualFormer(out_channels=2, decoder_channels=8, channels=(4, 8, 8, 8)))
    x = torch.rand(1, 1, 12, 16)  # 24 x 32 inside: a multiple of the network's output stride 8
    scripted = torch.jit.script(network.eval())
    assert torch.allclose(scripted(x), network(x))
    assert network(x).shape == (1, 2, 12, 16)


@pytest.mark.parametrize("scale_factor", [0, 1.5, True])
def test_scale_factor_must_be_a_positive_int(scale_factor):
    with pytest.raises(ValueError, match="scale_factor"):
        UpsampledInput(RecordShape(), scale_factor=scale_factor)
