"""Test-time augmentation over flips and 90-degree rotations."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from inference_helpers import (
    context_network,
    particles_image,
)
from monai.bundle import ConfigParser
from tiny_bundle_network import BUNDLE, TINY_NETWORK
from torch import nn

from rformer_monai.inference import (
    TTA_MODES,
    DihedralTTA,
    segment_large_micrograph,
    with_tta,
)

TTA_OVERRIDE = "$rformer_monai.inference.DihedralTTA(@network)"


def symmetric_network() -> nn.Module:
    """A 3x3 convolution whose kernel has every symmetry of the square, then tanh: rotation- and flip-equivariant."""
    convolution = nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        corner, edge, centre = 0.1, -0.3, 0.7
        convolution.weight.copy_(torch.tensor([[corner, edge, corner], [edge, centre, edge], [corner, edge, corner]]))
        convolution.bias.fill_(0.05)
    return nn.Sequential(convolution, nn.Tanh()).eval()


def _dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    flips = [x, torch.flip(x, (-1,))]
    return [torch.rot90(flipped, turns, (-2, -1)) for flipped in flips for turns in range(4)]


@pytest.mark.parametrize("mode", sorted(TTA_MODES))
def test_equivariant_network_is_unchanged(mode):
    network = symmetric_network()
    x = torch.randn(2, 1, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(DihedralTTA(network, mode)(x), network(x), rtol=0, atol=1e-6)


def test_output_is_equivariant_and_deterministic():
    network = DihedralTTA(context_network())
    x = torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = network(x)
        assert torch.equal(output, network(x))
        assert not torch.allclose(output, network.network(x), atol=1e-3)  # the augmentation does something
        for transformed_input, transformed_output in zip(_dihedral(x), _dihedral(output)):
            torch.testing.assert_close(network(transformed_input), transformed_output, rtol=0, atol=1e-5)


def test_with_tta_switches_on_a_setting():
    network = context_network()
    assert with_tta(network, None) is network
    assert isinstance(with_tta(network, "flips"), DihedralTTA) and with_tta(network, "flips").mode == "flips"


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        DihedralTTA(context_network(), "rotations")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        DihedralTTA(context_network())(torch.zeros(1, 8, 8))


def test_blocks_with_tta_match_whole_image_tta(tmp_path, write_micrograph, small_inferer):
    """TTA augments windows, not the image, so block streaming still matches whole-image inference."""
    network = DihedralTTA(context_network())
    path = write_micrograph("particles.tif", particles_image((300, 260)))
    blocks = segment_large_micrograph(path, tmp_path / "blocks", network, small_inferer, block_size=64, progress=False)
    whole = segment_large_micrograph(path, tmp_path / "whole", network, small_inferer, block_size=4096, progress=False)
    np.testing.assert_array_equal(tifffile.imread(blocks), tifffile.imread(whole))


def test_one_bundle_override_turns_tta_on(tmp_path, tiny_net):
    torch.save(tiny_net.state_dict(), tmp_path / "model.pt")
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    overrides = {
        "bundle_root": str(BUNDLE),
        "ckpt_path": str(tmp_path / "model.pt"),
        "device": "cpu",
        **TINY_NETWORK,
        "evaluator#network": TTA_OVERRIDE,
    }
    for key, value in overrides.items():
        parser[key] = value
    network = parser.get_parsed_content("evaluator#network").eval()  # as the evaluator does
    assert isinstance(network, DihedralTTA) and len(network.transforms) == TTA_MODES["dihedral"]
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(network.network(x), tiny_net(x))
