"""Warm starts: a fold's network starts from an earlier run's model of the same fold, a wider head included."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from research.warm_start import LoadMatchingWeights, fold_model, leading_channels
from rformer_monai.networks import ResidualFormer

SMALL = {"channels": (4, 8), "decoder_channels": 8, "head_channels": 4}


def test_leading_channels_come_from_the_narrower_tensor():
    own, saved = torch.zeros(5, 3, 1, 1), torch.ones(2, 3, 1, 1)
    merged = leading_channels(own, saved)
    assert merged[:2].eq(1).all() and merged[2:].eq(0).all() and own.eq(0).all()
    wider_input = leading_channels(own, torch.ones(2, 2, 1, 1))  # more input channels now too
    assert wider_input[:2, :2].eq(1).all() and wider_input.sum() == 4
    assert leading_channels(own, torch.ones(2, 4, 1, 1)) is None  # saved has more input channels
    assert leading_channels(own, torch.ones(2, 3)) is None  # another kind of layer


@pytest.mark.parametrize("head_channels", [SMALL["head_channels"], 2 * SMALL["head_channels"]])
def test_a_wider_head_keeps_the_earlier_channels_and_everything_else(tmp_path, head_channels):
    torch.manual_seed(0)
    earlier = ResidualFormer(out_channels=2, **SMALL)
    path = tmp_path / "fold_0" / "model.pt"
    path.parent.mkdir()
    torch.save(earlier.state_dict(), path)
    wider = ResidualFormer(out_channels=5, **{**SMALL, "head_channels": head_channels})
    new_channels = wider.decoder.head.weight[2:].detach().clone()
    LoadMatchingWeights(wider, fold_model(str(tmp_path), 0)).attach(Engine(lambda engine, batch: None))
    loaded = wider.state_dict()
    for name, value in earlier.state_dict().items():
        assert torch.equal(loaded[name][tuple(slice(0, side) for side in value.shape)], value), name
    assert torch.equal(wider.decoder.head.weight[2:], new_channels)


def test_another_network_or_a_missing_fold_is_named(tmp_path):
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="none of its weights fit"):
        LoadMatchingWeights(ResidualFormer(**SMALL), str(tmp_path / "other.pt")).attach(Engine(lambda engine, batch: None))
    with pytest.raises(FileNotFoundError, match="fold 3"):
        fold_model(str(tmp_path), 3)
