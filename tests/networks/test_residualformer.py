"""Contract tests for the ResidualFormer network, its parts and the complexity counters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rformer_monai.networks import (
    ResidualBlock,
    ResidualEncoder,
    ResidualFormer,
    SegFormerDecoder,
    count_macs,
    count_parameters,
)

PAPER_CHANNELS = (32, 64, 128, 256)
SMALL_CHANNELS = (4, 8, 16, 32)
SMALL_DECODER = 16
SMALL_HEAD = 8
KERNEL_3X3 = 9  # volume of a 3x3 kernel
BATCH_NORM_PARAMS_PER_CHANNEL = 2  # affine weight and bias
TILE_SHAPE = (1, 1, 256, 256)


def small_net(**overrides) -> ResidualFormer:
    """A ResidualFormer with small widths so that tests stay fast."""
    kwargs = dict(channels=SMALL_CHANNELS, decoder_channels=SMALL_DECODER, head_channels=SMALL_HEAD)
    kwargs.update(overrides)
    return ResidualFormer(**kwargs)


# ---------------------------------------------------------------- analytic formulas
def conv_params(in_channels: int, out_channels: int, kernel_volume: int = 1) -> int:
    """Weights plus biases of a dense convolution."""
    return in_channels * out_channels * kernel_volume + out_channels


def block_params(in_channels: int, out_channels: int, norm_params_per_channel: int = 0) -> int:
    """Parameters of a ResidualBlock."""
    total = conv_params(in_channels, out_channels, KERNEL_3X3) + conv_params(out_channels, out_channels, KERNEL_3X3)
    total += 2 * norm_params_per_channel * out_channels
    if in_channels != out_channels:
        total += conv_params(in_channels, out_channels)
    return total


def expected_params(
    in_channels: int,
    out_channels: int,
    channels: tuple[int, ...],
    decoder_channels: int,
    head_channels: int,
    encoder_norm_params_per_channel: int = 0,
) -> int:
    """Parameters of a ResidualFormer with batch norm in the decoder."""
    total = conv_params(in_channels, channels[0])
    block_inputs = (channels[0],) + channels[:-1]
    total += sum(
        block_params(c_in, c_out, encoder_norm_params_per_channel) for c_in, c_out in zip(block_inputs, channels)
    )
    total += sum(conv_params(width, decoder_channels) for width in channels)
    total += conv_params(len(channels) * decoder_channels, decoder_channels, KERNEL_3X3)
    total += conv_params(decoder_channels, head_channels) + BATCH_NORM_PARAMS_PER_CHANNEL * head_channels
    total += conv_params(head_channels, out_channels)
    return total


def expected_macs(
    input_shape: tuple[int, ...],
    out_channels: int,
    channels: tuple[int, ...],
    decoder_channels: int,
    head_channels: int,
    fusion_stride: int,
) -> int:
    """MACs of a 2-D ResidualFormer forward pass (convolutions only, biases excluded)."""
    batch, in_channels, height, width = input_shape

    def pixels(stride: int) -> int:
        return batch * (height // stride) * (width // stride)

    total = pixels(1) * in_channels * channels[0]
    block_inputs = (channels[0],) + channels[:-1]
    for level, (c_in, c_out) in enumerate(zip(block_inputs, channels)):
        per_pixel = KERNEL_3X3 * c_in * c_out + KERNEL_3X3 * c_out * c_out
        if c_in != c_out:
            per_pixel += c_in * c_out
        total += pixels(2**level) * per_pixel
    # projections run at the coarser of the feature's and the fusion resolution
    total += sum(pixels(max(2**level, fusion_stride)) * c * decoder_channels for level, c in enumerate(channels))
    fused = pixels(fusion_stride)
    total += fused * KERNEL_3X3 * len(channels) * decoder_channels * decoder_channels
    total += fused * decoder_channels * head_channels
    total += fused * head_channels * out_channels
    return total


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("spatial", [(64, 64), (96, 128), (256, 256)])
@pytest.mark.parametrize("fusion_stride", [1, 2, 4])
@pytest.mark.parametrize("decoder_channels", [8, 16])
def test_output_shape_grid(spatial, fusion_stride, decoder_channels):
    net = small_net(decoder_channels=decoder_channels, fusion_stride=fusion_stride).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *spatial))
    assert out.shape == (2, 1, *spatial)


def test_multichannel_input_and_output():
    net = small_net(in_channels=3, out_channels=2).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 32, 48))
    assert out.shape == (1, 2, 32, 48)


def test_3d_smoke():
    net = ResidualFormer(
        spatial_dims=3,
        channels=(2, 4, 8),
        decoder_channels=4,
        head_channels=4,
        fusion_stride=2,
        encoder_norm="instance",
    )
    x = torch.randn(2, 1, 8, 16, 12)
    out = net(x)
    assert out.shape == (2, 1, 8, 16, 12)
    out.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_encoder_features_and_attributes():
    encoder = ResidualEncoder(spatial_dims=2, in_channels=1, channels=SMALL_CHANNELS)
    assert encoder.out_channels == SMALL_CHANNELS
    assert encoder.output_stride == 8
    assert ResidualEncoder(channels=(4, 8)).output_stride == 2
    features = encoder(torch.randn(1, 1, 32, 64))
    assert [tuple(f.shape) for f in features] == [
        (1, width, 32 // 2**level, 64 // 2**level) for level, width in enumerate(SMALL_CHANNELS)
    ]
    assert ResidualFormer().output_stride == 8


def test_residual_block_shortcut():
    assert isinstance(ResidualBlock(2, 4, 4).shortcut, nn.Identity)
    assert isinstance(ResidualBlock(3, 4, 6).shortcut, nn.Conv3d)
    block = ResidualBlock(2, 4, 6, norm=("batch", {}))
    assert block(torch.randn(2, 4, 10, 12)).shape == (2, 6, 10, 12)


def test_residual_block_zero_branch_is_identity():
    block = ResidualBlock(2, 4, 4)
    nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(block.conv2.bias)
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(block(x), x)


def test_decoder_resize_and_projection_commute():
    """Resizing before projecting (the cheap order for fine features) gives the same output."""
    torch.manual_seed(0)
    decoder = SegFormerDecoder(2, SMALL_CHANNELS, decoder_channels=SMALL_DECODER, fusion_stride=4).eval()
    features = ResidualEncoder(channels=SMALL_CHANNELS)(torch.randn(1, 1, 64, 64))
    with torch.no_grad():
        cheap = decoder(features)
        decoder.resize_before_projection = [False] * len(SMALL_CHANNELS)
        literal = decoder(features)
    torch.testing.assert_close(cheap, literal, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- gradients, parameters, determinism
@pytest.mark.parametrize("fusion_stride", [1, 4])
def test_backward_gives_finite_gradients(fusion_stride):
    torch.manual_seed(0)
    net = small_net(fusion_stride=fusion_stride, encoder_norm=("batch", {})).train()
    loss = nn.functional.binary_cross_entropy_with_logits(
        net(torch.randn(2, 1, 32, 32)), torch.randint(0, 2, (2, 1, 32, 32)).float()
    )
    loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_parameter_count_paper_config():
    net = ResidualFormer()
    assert count_parameters(net) == expected_params(1, 1, PAPER_CHANNELS, 256, 32)


def test_parameter_count_small_config():
    net = small_net(in_channels=2, out_channels=3, encoder_norm=("batch", {}))
    expected = expected_params(2, 3, SMALL_CHANNELS, SMALL_DECODER, SMALL_HEAD, BATCH_NORM_PARAMS_PER_CHANNEL)
    assert count_parameters(net) == expected


def test_count_parameters_skips_frozen():
    net = small_net()
    for parameter in net.encoder.parameters():
        parameter.requires_grad_(False)
    assert count_parameters(net) == sum(p.numel() for p in net.decoder.parameters())


def test_fixed_seed_gives_identical_outputs():
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = small_net(fusion_stride=2).eval()
        with torch.no_grad():
            outputs.append(net(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_torchscript_round_trip(tmp_path):
    torch.manual_seed(0)
    net = small_net(fusion_stride=2).eval()
    x = torch.randn(2, 1, 64, 96, generator=torch.Generator().manual_seed(2))
    scripted = torch.jit.script(net)
    path = tmp_path / "residualformer.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    with pytest.raises(torch.jit.Error, match=r"\(250, 250\)"):
        loaded(torch.randn(1, 1, 250, 250))


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"spatial_dims": 1}, "spatial_dims"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"out_channels": -1}, "out_channels"),
        ({"channels": ()}, "channels"),
        ({"channels": (4, 0, 8)}, "channels"),
        ({"channels": (4, 8.0)}, "channels"),
        ({"channels": 16}, "channels"),
        ({"decoder_channels": 0}, "decoder_channels"),
        ({"head_channels": 0}, "head_channels"),
        ({"fusion_stride": 3}, "fusion_stride"),
        ({"fusion_stride": 16}, "fusion_stride"),
        ({"fusion_stride": 0}, "fusion_stride"),
    ],
)
def test_bad_arguments_raise(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        small_net(**kwargs)


def test_fusion_stride_error_lists_choices():
    with pytest.raises(ValueError, match=r"fusion_stride.*\(1, 2, 4, 8\).*got 16"):
        SegFormerDecoder(2, PAPER_CHANNELS, fusion_stride=16)


def test_non_divisible_input_names_padded_shape():
    net = small_net()
    with pytest.raises(ValueError, match=r"\(250, 250\).*output stride 8.*\(256, 256\).*DivisiblePad\(k=8\)"):
        net(torch.zeros(1, 1, 250, 250))
    with pytest.raises(ValueError, match=r"\(64, 60\).*\(64, 64\)"):
        net(torch.zeros(1, 1, 64, 60))


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match=r"\(1, 64, 64\).*4 dimensions"):
        small_net()(torch.zeros(1, 64, 64))


# ---------------------------------------------------------------- MACs
@pytest.mark.parametrize("decoder_channels, fusion_stride", [(256, 1), (64, 1), (256, 4)])
def test_count_macs_matches_formula(decoder_channels, fusion_stride, capsys):
    net = ResidualFormer(decoder_channels=decoder_channels, fusion_stride=fusion_stride)
    expected = expected_macs(TILE_SHAPE, 1, PAPER_CHANNELS, decoder_channels, 32, fusion_stride)
    assert count_macs(net, TILE_SHAPE) == expected
    assert net.training  # mode restored
    assert capsys.readouterr().out == ""


def test_count_macs_small_config_batch():
    shape = (2, 1, 64, 96)
    net = small_net(fusion_stride=2).eval()
    assert count_macs(net, shape) == expected_macs(shape, 1, SMALL_CHANNELS, SMALL_DECODER, SMALL_HEAD, 2)
    assert not net.training


def test_count_macs_linear_transposed_and_grouped():
    model = nn.Sequential(
        nn.Conv2d(4, 8, kernel_size=3, padding=1, groups=2),  # 8*8*8 outputs x 2 in/group x 9
        nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2),  # 8*8*8 inputs x 4 out x 4
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),  # 10 outputs x 1024 inputs
    )
    expected = 8 * 8 * 8 * 2 * 9 + 8 * 8 * 8 * 4 * 4 + 10 * 4 * 16 * 16
    assert count_macs(model, (1, 4, 8, 8)) == expected


def test_count_macs_does_not_touch_weights():
    net = small_net()
    before = {name: t.clone() for name, t in net.state_dict().items()}
    count_macs(net, (1, 1, 32, 32))
    after = net.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert all(t.device.type == "cpu" for t in after.values())


@pytest.mark.parametrize("shape", [(), (1, 0, 8), (1, 1, 8.5), "1x1x8"])
def test_count_macs_bad_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(small_net(), shape)


def test_macs_fall_with_fusion_stride():
    macs = [count_macs(ResidualFormer(fusion_stride=stride), TILE_SHAPE) for stride in (1, 2, 4)]
    assert macs[0] > macs[1] > macs[2]
