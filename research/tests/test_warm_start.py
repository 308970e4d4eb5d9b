"""Warm starts: a fold's network starts from an earlier run's model of the same fold, a wider head included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from research.warm_start import LoadMatchingWeights, fold_model, leading_channels
from rformer_monai.networks import ResidualFormer

SMALL = {"channels": (4, 8), "decoder_channels": 8, "head_channels": 4}
HELD_OUT = [{"image": "/data/images/a.tif", "label": "/data/masks/a.tif"}, {"image": "/data/images/b.tif"}]


def save_fold(cv_dir: Path, network: torch.nn.Module) -> None:
    """An earlier CV run's fold 0: its model and the split that held out ``HELD_OUT``."""
    fold_dir = cv_dir / "fold_0"
    fold_dir.mkdir()
    torch.save(network.state_dict(), fold_dir / "model.pt")
    (fold_dir / "split.json").write_text(json.dumps({"held_out_images": ["b.tif", "a.tif"]}))


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
    save_fold(tmp_path, earlier)
    wider = ResidualFormer(out_channels=5, **{**SMALL, "head_channels": head_channels})
    new_channels = wider.decoder.head.weight[2:].detach().clone()
    LoadMatchingWeights(wider, fold_model(str(tmp_path), 0, HELD_OUT)).attach(Engine(lambda engine, batch: None))
    loaded = wider.state_dict()
    for name, value in earlier.state_dict().items():
        assert torch.equal(loaded[name][tuple(slice(0, side) for side in value.shape)], value), name
    assert torch.equal(wider.decoder.head.weight[2:], new_channels)


def test_another_network_a_missing_fold_or_another_split_is_named(tmp_path):
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="none of its weights fit"):
        LoadMatchingWeights(ResidualFormer(**SMALL), str(tmp_path / "other.pt")).attach(Engine(lambda engine, batch: None))
    with pytest.raises(FileNotFoundError, match="fold 3"):
        fold_model(str(tmp_path), 3, HELD_OUT)
    save_fold(tmp_path, ResidualFormer(**SMALL))
    with pytest.raises(ValueError, match="would start from a model that saw them"):
        fold_model(str(tmp_path), 0, [{"image": "/data/images/c.tif"}])
