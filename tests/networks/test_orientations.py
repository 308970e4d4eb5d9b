"""Test-time orientation averaging: the eight orientations, their inverses, and the averaged network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rformer_monai.engines import SettingsError
from rformer_monai.networks import OrientationAveraged, ResidualFormer, with_test_time_orientations
from rformer_monai.networks.orientations import ORIENTATIONS, orient, restore_orientation


@pytest.mark.parametrize("orientation", range(ORIENTATIONS))
def test_restore_orientation_undoes_orient(orientation):
    image = torch.randn(2, 3, 6, 5)
    assert torch.equal(restore_orientation(orient(image, orientation), orientation), image)


def test_orientations_are_the_eight_symmetries_of_a_square():
    square = torch.arange(9.0).view(1, 1, 3, 3)
    oriented = {tuple(orient(square, orientation).flatten().tolist()) for orientation in range(ORIENTATIONS)}
    assert len(oriented) == ORIENTATIONS
    assert tuple(torch.flip(square, dims=(-1,)).flatten().tolist()) in oriented
    assert tuple(square.transpose(-2, -1).flatten().tolist()) in oriented


def _asymmetric_convolution() -> nn.Conv2d:
    convolution = nn.Conv2d(1, 1, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        convolution.weight.copy_(torch.arange(9.0).view(1, 1, 3, 3))
    return convolution


def test_averaged_convolution_is_the_convolution_with_the_symmetrised_kernel():
    convolution = _asymmetric_convolution()
    symmetric = nn.Conv2d(1, 1, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        symmetric.weight.copy_(sum(orient(convolution.weight, k) for k in range(ORIENTATIONS)) / ORIENTATIONS)
    image = torch.randn(1, 1, 8, 7)
    with torch.no_grad():
        averaged = OrientationAveraged(convolution)(image)
        torch.testing.assert_close(averaged, symmetric(image))
        assert not torch.allclose(averaged, convolution(image))


def test_pixelwise_network_is_unchanged():
    pixelwise = nn.Conv2d(1, 2, kernel_size=1)
    image = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(OrientationAveraged(pixelwise)(image), pixelwise(image))


def test_averaged_residualformer_is_orientation_equivariant():
    network = ResidualFormer(out_channels=2, channels=(4, 8, 16, 32), decoder_channels=8, head_channels=4).eval()
    averaged = OrientationAveraged(network)
    image = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        output = averaged(image)
        assert output.shape == (1, 2, 32, 32)
        for orientation in range(ORIENTATIONS):
            torch.testing.assert_close(averaged(orient(image, orientation)), orient(output, orientation))


def test_switch_wraps_only_when_enabled():
    network = nn.Conv2d(1, 1, kernel_size=1)
    assert with_test_time_orientations(network, False) is network
    assert with_test_time_orientations(network, "false") is network
    for enabled in (True, "true"):
        wrapped = with_test_time_orientations(network, enabled)
        assert isinstance(wrapped, OrientationAveraged) and wrapped.network is network
    with pytest.raises(SettingsError, match="test_time_orientations"):
        with_test_time_orientations(network, "sometimes")
