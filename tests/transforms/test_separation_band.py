"""The separation targets (a second label channel around the lines between touching particles: band, border
proximity, loss weights) and the split of a two-channel prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rformer_monai.transforms import (
    LineWeightAndRelativeBorderd,
    RelativeBorderProximity,
    RelativeBorderProximityd,
    SeparationWeight,
    SeparationWeightd,
    SplitSeparationd,
    StackSeparationTargets,
    separation_line_pairs,
    separation_lines,
    train_transforms,
)
from rformer_monai.transforms.array import DEFAULT_LINE_WEIGHT
from rformer_monai.transforms.pipelines import separation_transform


def two_squares_split_by_a_line() -> np.ndarray:
    """20x30 mask: two 10x10 squares side by side, one background column (x = 15) between them."""
    mask = np.zeros((20, 31), dtype=np.uint8)
    mask[5:15, 5:15] = 1
    mask[5:15, 16:26] = 1
    return mask


def test_lines_are_the_pixels_between_two_particles():
    lines = separation_lines(two_squares_split_by_a_line())
    # the column between the squares, and its two ends, which see both squares' corners
    assert np.argwhere(lines).tolist() == [[row, 15] for row in range(4, 16)]


def test_line_pairs_number_each_pair_of_touching_particles_once():
    mask = np.zeros((20, 43), dtype=np.uint8)
    mask[5:15, 5:15] = mask[5:15, 16:26] = mask[5:15, 27:37] = 1  # three squares in a row, two lines
    pairs = separation_line_pairs(mask)
    assert np.array_equal(pairs > 0, separation_lines(mask))
    assert sorted(np.unique(pairs[:, 15]).tolist()) == [0, 1] and sorted(np.unique(pairs[:, 26]).tolist()) == [0, 2]
    assert not separation_line_pairs(np.pad(np.ones((4, 4), dtype=np.uint8), 2)).any()  # a lone particle


def test_no_lines_around_a_lone_particle_or_between_distant_ones():
    mask = np.zeros((30, 30), dtype=np.uint8)
    mask[2:8, 2:8] = 1
    mask[2:8, 10:16] = 1  # two columns apart: not touching
    assert not separation_lines(mask).any()


def test_diagonal_neighbours_are_two_particles_with_a_line():
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[1:3, 1:3] = 1
    mask[3:5, 3:5] = 1  # touches the first square at one corner only: 4-connected, two particles
    lines = separation_lines(mask)
    assert lines[2, 3] and lines[3, 2]
    assert lines.sum() == 2


def test_split_moves_the_second_channel_and_leaves_one_channel_alone():
    two = torch.stack([torch.full((4, 4), 0.9), torch.full((4, 4), 0.2)])
    split = SplitSeparationd(keys="pred")({"pred": two})
    assert split["pred"].shape == (1, 4, 4) and split["pred_separation"].shape == (1, 4, 4)
    assert torch.allclose(split["pred"], torch.full((1, 4, 4), 0.9))
    assert torch.allclose(split["pred_separation"], torch.full((1, 4, 4), 0.2))
    one = SplitSeparationd(keys="pred")({"pred": two[:1]})
    assert set(one) == {"pred"}


def test_split_keeps_the_mask_of_a_three_channel_label():
    label = torch.stack([torch.ones(4, 4), torch.full((4, 4), 11.0), torch.zeros(4, 4)])
    split = SplitSeparationd(keys="label")({"label": label})
    assert torch.equal(split["label"], torch.ones(1, 4, 4)) and split["label_separation"].shape == (2, 4, 4)


def test_split_moves_every_channel_after_the_first():
    offsets = torch.stack([torch.full((4, 4), 0.9), torch.full((4, 4), 0.2), torch.full((4, 4), 0.7)])
    split = SplitSeparationd(keys="pred")({"pred": offsets})
    assert torch.equal(split["pred"], offsets[:1]) and torch.equal(split["pred_separation"], offsets[1:])


def test_split_rejects_a_prediction_without_channels():
    with pytest.raises(ValueError, match="at least one channel"):
        SplitSeparationd(keys="pred")({"pred": torch.zeros(0, 4, 4)})


def test_relative_border_proximity_reaches_zero_at_every_particle_centre_whatever_its_size():
    mask = np.zeros((1, 30, 30), dtype=np.float32)
    mask[0, 2:19, 2:19] = 1  # 17x17: centre 9 px from the background
    mask[0, 24:27, 24:27] = 1  # 3x3: centre 2 px from the background
    proximity = RelativeBorderProximity()(torch.as_tensor(mask))[1].numpy()
    assert (proximity[mask[0] == 0] == 1.0).all()
    assert proximity[10, 10] == 0.0 and proximity[25, 25] == 0.0
    assert proximity[2, 10] == pytest.approx(1.0 - 1.0 / 9) and proximity[24, 25] == pytest.approx(1.0 - 1.0 / 2)


def test_relative_border_proximity_gives_each_touching_particle_its_own_core():
    label = two_squares_split_by_a_line()[None]
    out = RelativeBorderProximityd(keys="label")({"label": torch.as_tensor(label)})["label"]
    assert torch.equal(out[0], torch.as_tensor(label[0], dtype=torch.float32))
    row = out[1, 10].numpy()
    assert row[15] == 1.0  # the line is background
    assert row[14] == pytest.approx(0.8) and row[16] == pytest.approx(0.8)  # border pixels: 1 - 1/5 on both sides
    assert (row[:15] == 0).any() and (row[16:] == 0).any()  # a core (0) in each particle


def test_stacked_targets_are_the_mask_then_each_target_channel():
    label = torch.as_tensor(two_squares_split_by_a_line()[None], dtype=torch.float32)
    out = LineWeightAndRelativeBorderd(keys="label", sigma_px=2)({"label": label})["label"]
    assert out.shape == (3, 20, 31)
    assert torch.equal(out[0], label[0])
    assert torch.equal(out[1], SeparationWeight(sigma_px=2)(label)[1])
    assert torch.equal(out[2], RelativeBorderProximity()(label)[1])
    with pytest.raises(ValueError, match="at least one"):
        StackSeparationTargets([])


def test_relative_border_target_takes_no_size():
    with pytest.raises(ValueError, match="takes no size"):
        train_transforms(separation_target="relative_border", separation_px=3)


def test_unknown_separation_target_is_a_clear_error():
    with pytest.raises(ValueError, match="separation_target"):
        train_transforms(separation_target="ring")


def test_weight_is_highest_on_the_line_and_decays_with_distance():
    out = SeparationWeight(line_weight=10, sigma_px=2)(torch.as_tensor(two_squares_split_by_a_line()[None]))
    assert out.shape == (2, 20, 31)
    weight = out[1].numpy()
    assert weight[10, 15] == pytest.approx(11.0)  # on the line
    assert weight[10, 14] == pytest.approx(1 + 10 * np.exp(-1 / 8))  # one pixel beside it
    assert weight[10, 5] == pytest.approx(1 + 10 * np.exp(-100 / 8), abs=1e-6)
    assert weight.min() >= 1.0


def test_weight_is_one_where_no_particles_touch():
    mask = np.zeros((1, 20, 20), dtype=np.float32)
    mask[0, 5:12, 5:12] = 1
    out = SeparationWeightd(keys="label")({"label": torch.as_tensor(mask), "image": torch.zeros(1, 20, 20)})
    assert torch.equal(out["label"][0], torch.as_tensor(mask[0]))
    assert torch.equal(out["label"][1], torch.ones(20, 20)) and out["image"].shape == (1, 20, 20)


@pytest.mark.parametrize("line_weight, sigma_px", [(-1.0, 3.0), (10.0, 0.0), (True, 3.0)])
def test_weight_rejects_bad_arguments(line_weight, sigma_px):
    with pytest.raises(ValueError, match="line_weight|sigma_px"):
        SeparationWeight(line_weight, sigma_px)


def test_balanced_weight_raises_small_particles_to_the_balance_area():
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[2:22, 2:22] = 1  # 400 px: at the balance area, weight 1
    mask[2:7, 23:28] = 1  # 25 px touching it across the line at x = 22: factor 16, capped at 4
    mask[25:28, 30:34] = 1  # 12 px alone: factor 400 / 12, capped at 4
    mask[26, 5:8] = 1  # 3 px speck: below the smallest balanced area, weight 1
    plain = SeparationWeight(line_weight=10, sigma_px=2)(torch.as_tensor(mask[None]))[1].numpy()
    balanced = SeparationWeight(line_weight=10, sigma_px=2, balance_area_px=400, max_balance=4)(
        torch.as_tensor(mask[None])
    )[1].numpy()
    assert balanced[12, 10] == pytest.approx(plain[12, 10])  # inside the large particle, away from the small one
    assert balanced[4, 25] == pytest.approx(4 * plain[4, 25])  # the small particle
    assert balanced[4, 22] == pytest.approx(4 * plain[4, 22])  # the line takes the smaller particle's factor
    assert balanced[26, 32] == pytest.approx(4.0) and balanced[24, 32] == pytest.approx(4.0)  # on and beside it
    assert balanced[26, 6] == pytest.approx(plain[26, 6])
    assert balanced[15, 35] == pytest.approx(1.0)  # background far from every particle
    assert torch.equal(
        SeparationWeight(balance_area_px=0)(torch.as_tensor(mask[None])), SeparationWeight()(torch.as_tensor(mask[None]))
    )


@pytest.mark.parametrize("balance_area_px, max_balance", [(-1.0, 10.0), (100.0, 0.5), (True, 10.0)])
def test_balanced_weight_rejects_bad_arguments(balance_area_px, max_balance):
    with pytest.raises(ValueError, match="balance_area_px|max_balance"):
        SeparationWeight(balance_area_px=balance_area_px, max_balance=max_balance)


def test_balance_needs_a_target_with_weights():
    with pytest.raises(ValueError, match="no loss weights to balance"):
        train_transforms(separation_target="relative_border", balance_area_px=400)
    label = torch.as_tensor(two_squares_split_by_a_line()[None], dtype=torch.float32)
    out = LineWeightAndRelativeBorderd(keys="label", balance_area_px=400)({"label": label})["label"]
    assert torch.equal(out[1], SeparationWeight(balance_area_px=400)(label)[1])  # 100 px squares: factor 4
    assert out[1].min() == pytest.approx(1.0, abs=1e-3) and out[1][10, 10] == pytest.approx(4 * SeparationWeight()(label)[1][10, 10])


def test_line_weight_sets_the_peak_of_the_weights_on_a_line():
    with pytest.raises(ValueError, match="no loss weights: line_weight"):
        train_transforms(separation_target="relative_border", line_weight=30)
    label = torch.as_tensor(two_squares_split_by_a_line()[None], dtype=torch.float32)
    heavy = separation_transform("weight_and_relative_border", 3, line_weight=30)({"label": label})["label"]
    default = separation_transform("weight_and_relative_border", 3)({"label": label})["label"]
    assert heavy[1].max() == pytest.approx(31.0) and default[1].max() == pytest.approx(1 + DEFAULT_LINE_WEIGHT)
    assert torch.equal(heavy[1], SeparationWeight(line_weight=30, sigma_px=3)(label)[1])
    assert torch.equal(heavy[2], default[2])  # the distance map does not depend on the weights


def test_training_crops_centre_on_particles_of_the_mask_not_on_the_weights(write_tiff):
    """The weights are >= 1 on the background too: the crop must be drawn from the mask alone."""
    mask = np.zeros((160, 160), dtype=np.uint8)
    mask[:31, :31] = np.pad(two_squares_split_by_a_line(), ((0, 11), (0, 0)))[:31, :31] * 255  # particles in one corner
    image = np.where(mask > 0, 200, 40).astype(np.uint8)
    files = {"image": str(write_tiff("corner.tif", image)), "label": str(write_tiff("corner_m.tif", mask))}
    transforms = train_transforms(
        roi_size=(32, 32), num_samples=8, crop_bottom=0, foreground_fraction=1.0, separation_target="weight"
    )
    transforms.set_random_state(seed=0)
    for sample in transforms(files):
        assert sample["label"].shape == (2, 32, 32)
        assert sample["label"][0].sum() > 0  # every crop holds particle pixels
        assert sample["label"][1].min() >= 1.0
