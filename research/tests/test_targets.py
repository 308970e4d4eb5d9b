"""The research separation targets: band, border proximity, centre offsets and their boundary map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from research.targets import (
    BorderProximity,
    BorderProximityd,
    CentreOffsets,
    LineWeightAndCentreOffsetsd,
    SeparationBand,
    SeparationBandd,
    offset_boundaries,
    offsets_or_separation_map,
)
from rformer_monai.particles import particle_step_maps, separate_particles
from rformer_monai.transforms import SeparationWeight, separation_lines, train_transforms


def two_squares_split_by_a_line() -> np.ndarray:
    """20x31 mask: two 10x10 squares side by side, one background column (x = 15) between them."""
    mask = np.zeros((20, 31), dtype=np.uint8)
    mask[5:15, 5:15] = 1
    mask[5:15, 16:26] = 1
    return mask


def _touching_squares_offsets() -> tuple[np.ndarray, np.ndarray]:
    """Two 10x10 squares split by a one-pixel line at x = 15, and their true centre offsets (2, H, W)."""
    mask = np.zeros((1, 20, 31), dtype=np.float32)
    mask[0, 5:15, 5:15] = mask[0, 5:15, 16:26] = 1
    return mask[0] > 0, np.asarray(CentreOffsets()(mask))[1:]
def test_offset_boundaries_are_one_where_the_particles_meet_and_zero_inside_them():
    mask, offsets = _touching_squares_offsets()
    boundaries = offset_boundaries(offsets)
    assert boundaries.shape == mask.shape and boundaries.min() >= 0.0 and boundaries.max() <= 1.0
    assert (boundaries[6:14, 14:17] == 1.0).all()  # the line and the particle pixels on each side of it
    assert (boundaries[6:14, 6:13] == 0.0).all() and (boundaries[6:14, 17:24] == 0.0).all()


def test_offset_boundaries_split_touching_particles_that_the_mask_joins():
    mask, offsets = _touching_squares_offsets()
    joined = mask.copy()
    joined[5:15, 15] = True  # the line closed, as a network that does not draw it predicts
    _, cut = particle_step_maps(joined.astype(np.float64), offset_boundaries(offsets))
    labels = separate_particles(joined, probability=cut, min_size_px=1)
    assert labels.max() == 2
    with pytest.raises(ValueError, match=r"offsets must be \(2, H, W\)"):
        offset_boundaries(offsets[:1])


def test_offsets_or_separation_map_takes_one_channel_as_it_is_and_two_as_offset_boundaries():
    _, offsets = _touching_squares_offsets()
    np.testing.assert_array_equal(offsets_or_separation_map(offsets[0]), offsets[0])
    np.testing.assert_array_equal(offsets_or_separation_map(offsets[:1]), offsets[0])
    np.testing.assert_array_equal(offsets_or_separation_map(offsets), offset_boundaries(offsets))
    with pytest.raises(ValueError, match="separation must be"):
        offsets_or_separation_map(np.zeros((3, 4, 4)))


@pytest.mark.parametrize("half_width", [0, 1, 2])
def test_band_is_the_line_widened_by_half_width(half_width):
    mask = two_squares_split_by_a_line()
    out = SeparationBand(half_width)(torch.as_tensor(mask[None], dtype=torch.float32))
    assert out.shape == (2, *mask.shape) and out.dtype == torch.float32
    assert torch.equal(out[0], torch.as_tensor(mask, dtype=torch.float32))
    row = out[1, 10].numpy()  # a row through the middle of both squares
    assert np.flatnonzero(row).tolist() == list(range(15 - half_width, 16 + half_width))


def test_band_keeps_meta_and_dictionary_version_touches_only_its_keys():
    mask = MetaTensor(torch.as_tensor(two_squares_split_by_a_line()[None], dtype=torch.float32), meta={"k": 1})
    image = torch.ones(1, *mask.shape[1:])
    out = SeparationBandd(keys="label", half_width_px=1)({"image": image, "label": mask})
    assert isinstance(out["label"], MetaTensor) and out["label"].meta["k"] == 1
    assert out["label"].shape[0] == 2 and out["image"] is image


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_band_rejects_bad_half_width(bad):
    with pytest.raises(ValueError, match="half_width_px"):
        SeparationBand(bad)


def test_band_rejects_multichannel_mask():
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        SeparationBand()(torch.zeros(2, 8, 8))


def test_training_pipeline_crops_mask_and_band_together(write_tiff):
    mask = np.tile(two_squares_split_by_a_line(), (4, 3)) * 255
    image = np.where(mask > 0, 200, 40).astype(np.uint8)
    files = {"image": str(write_tiff("pair.tif", image)), "label": str(write_tiff("pair_m.tif", mask.astype(np.uint8)))}
    transforms = train_transforms(roi_size=(32, 32), num_samples=4, crop_bottom=0, separation_target=SeparationBandd(keys="label", half_width_px=1))
    transforms.set_random_state(seed=0)
    for sample in transforms(files):
        assert sample["label"].shape == (2, 32, 32)
        label, band = sample["label"][0], sample["label"][1]
        assert set(torch.unique(band).tolist()) <= {0.0, 1.0}
        # the line itself is background in the mask and inside the band
        assert not bool((separation_lines(label.numpy()) & (band.numpy() == 0)).any())


def test_border_proximity_is_one_outside_and_falls_to_zero_in_cores():
    mask = np.zeros((1, 21, 21), dtype=np.float32)
    mask[0, 2:19, 2:19] = 1  # a 17x17 square: its centre is 9 pixels from the background
    out = BorderProximity(radius_px=4)(torch.as_tensor(mask))
    assert out.shape == (2, 21, 21)
    proximity = out[1].numpy()
    assert (proximity[mask[0] == 0] == 1.0).all()
    assert proximity[2, 10] == pytest.approx(1.0 - 1.0 / 4)  # a border pixel: distance 1
    assert proximity[10, 10] == 0.0 and proximity.min() == 0.0


def test_border_proximity_dips_between_touching_particles():
    out = BorderProximityd(keys="label", radius_px=5)({"label": torch.as_tensor(two_squares_split_by_a_line()[None])})
    row = out["label"][1, 10].numpy()
    assert row[15] == 1.0  # the line
    assert row[14] > row[10] < 1.0 and row[16] > row[20] < 1.0  # cores lower than the pixels beside the line


@pytest.mark.parametrize("bad", [0, -1.0, True])
def test_border_proximity_rejects_bad_radius(bad):
    with pytest.raises(ValueError, match="radius_px"):
        BorderProximity(bad)


def test_centre_offsets_run_from_zero_to_one_across_each_particle_and_jump_at_the_line():
    label = torch.as_tensor(two_squares_split_by_a_line()[None])  # squares at x 5..14 and 16..25, y 5..14
    out = CentreOffsets()(label)
    assert out.shape == (3, 20, 31) and torch.equal(out[0], label[0].float())
    horizontal, vertical = out[1].numpy(), out[2].numpy()
    np.testing.assert_allclose(horizontal[10, 5:15], np.linspace(0.0, 1.0, 10), atol=1e-6)
    np.testing.assert_allclose(horizontal[10, 16:26], np.linspace(0.0, 1.0, 10), atol=1e-6)
    np.testing.assert_allclose(vertical[5:15, 20], np.linspace(0.0, 1.0, 10), atol=1e-6)
    # the vertical offset does not change along x (the squares share their rows)
    assert (vertical[5:15, 5:15] == vertical[5:15, 5:6]).all() and (vertical[5:15, 16:26] == vertical[5:15, 5:6]).all()
    background = label[0].numpy() == 0
    assert (horizontal[background] == 0.5).all() and (vertical[background] == 0.5).all()


def test_centre_offsets_of_a_single_pixel_particle_are_its_centre():
    mask = np.zeros((1, 5, 5), dtype=np.float32)
    mask[0, 2, 2] = 1
    out = CentreOffsets()(mask)
    assert isinstance(out, np.ndarray) and (out[1:] == 0.5).all()


def test_offset_targets_follow_the_loss_weights():
    label = torch.as_tensor(two_squares_split_by_a_line()[None], dtype=torch.float32)
    out = LineWeightAndCentreOffsetsd(keys="label", sigma_px=2)({"label": label})["label"]
    assert out.shape == (4, 20, 31)
    assert torch.equal(out[1], SeparationWeight(sigma_px=2)(label)[1])
    assert torch.equal(out[2:], CentreOffsets()(label)[1:])
