"""Tests for the SEM transforms and pipelines: data-bar crop and its inverse, mask binarisation, shape check,
training crops, intensity normalisation."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, Zoom
from monai.utils import set_determinism
from scipy import ndimage

from rformer_monai.particles.labelling import label_particles
from rformer_monai.transforms import (
    BinarizeMask,
    BinarizeMaskd,
    CropDataBar,
    CropDataBard,
    FitMaskToImaged,
    LabelParticles,
    LoadMicrograph,
    LoadMicrographd,
    SeparateParticles,
    inference_transforms,
    intensity_transform,
    train_transforms,
    validation_transforms,
)
from rformer_monai.transforms.array import DATA_BAR_ROWS_KEY
from rformer_monai.transforms.pipelines import INTENSITY_MODES, ZOOM_RANGE

KEYS = ["image", "label"]
SHAPE = (120, 160)
BAR_ROWS = 24


@pytest.fixture
def pair_with_bar(write_tiff, micrograph_with_bar):
    """An image with a 24-row data bar and a mask with particles, some of them spilling into the bar rows."""
    image = micrograph_with_bar(SHAPE, BAR_ROWS, seed=0)
    mask = np.zeros(SHAPE, np.uint8)
    mask[10:30, 20:50] = 255
    mask[60:90, 100:130] = 255
    mask[SHAPE[0] - BAR_ROWS - 5 : SHAPE[0] - BAR_ROWS + 5, 0:10] = 255  # spills 5 rows into the bar
    return {"image": str(write_tiff("sample.tif", image)), "label": str(write_tiff("sample_m.tif", mask))}, image, mask


# ------------------------------------------------------------------------------------------
# data bar crop and its inverse


def test_crop_data_bar_crops_image_and_mask_together(pair_with_bar):
    files, image, mask = pair_with_bar
    loaded = Compose([LoadMicrographd(keys=KEYS), CropDataBard(keys=KEYS)])(files)
    height = SHAPE[0] - BAR_ROWS
    for key, truth in (("image", image), ("label", mask)):
        assert loaded[key].shape == (1, height, SHAPE[1])
        np.testing.assert_array_equal(loaded[key][0].numpy(), truth[:height])
        assert loaded[key].meta[DATA_BAR_ROWS_KEY] == BAR_ROWS


def test_invertd_restores_full_size_with_zeros_in_bar_rows(pair_with_bar):
    files, image, mask = pair_with_bar
    preprocessing = Compose([LoadMicrographd(keys=KEYS), CropDataBard(keys=KEYS)])
    data = preprocessing(files)
    data["pred"] = data["label"].clone() / 255.0  # a "prediction" on the cropped image
    restored = Invertd(keys=["pred", "image", "label"], transform=preprocessing, orig_keys=["image", "image", "label"])(
        data
    )
    height = SHAPE[0] - BAR_ROWS
    for key, truth in (("pred", mask / 255.0), ("image", image), ("label", mask)):
        assert restored[key].shape == (1, *SHAPE)
        np.testing.assert_allclose(restored[key][0, :height].numpy(), truth[:height])
        assert torch.count_nonzero(restored[key][0, height:]) == 0


def test_inference_pipeline_is_invertible(pair_with_bar):
    files, _, mask = pair_with_bar
    preprocessing = inference_transforms()
    data = preprocessing({"image": files["image"]})
    assert data["image"].shape == (1, SHAPE[0] - BAR_ROWS, SHAPE[1])
    data["pred"] = torch.ones_like(data["image"])
    restored = Invertd(keys="pred", transform=preprocessing, orig_keys="image")(data)
    assert restored["pred"].shape == (1, *SHAPE)
    assert restored["pred"].sum() == (SHAPE[0] - BAR_ROWS) * SHAPE[1]


@pytest.mark.parametrize(
    "crop_bottom, expected_height", [(0, SHAPE[0]), (10, SHAPE[0] - 10), (None, SHAPE[0] - BAR_ROWS)]
)
def test_crop_bottom_setting(pair_with_bar, crop_bottom, expected_height):
    files, _, _ = pair_with_bar
    data = Compose([LoadMicrographd(keys=KEYS), CropDataBard(keys=KEYS, crop_bottom=crop_bottom)])(files)
    assert data["image"].shape[1] == data["label"].shape[1] == expected_height


def test_crop_data_bar_array_transform(micrograph_with_bar):
    image = MetaTensor(torch.from_numpy(micrograph_with_bar(SHAPE, BAR_ROWS, seed=1)[None].astype(np.float32)))
    cropper = CropDataBar()
    assert cropper.rows_to_crop(image) == BAR_ROWS
    cropped = cropper(image)
    assert cropped.shape == (1, SHAPE[0] - BAR_ROWS, SHAPE[1])
    assert cropped.meta[DATA_BAR_ROWS_KEY] == BAR_ROWS
    restored = cropper.inverse(cropped)
    assert restored.shape == (1, *SHAPE)
    torch.testing.assert_close(restored[:, : SHAPE[0] - BAR_ROWS], image[:, : SHAPE[0] - BAR_ROWS])


def test_bad_crop_bottom_raises():
    with pytest.raises(ValueError, match="crop_bottom must be None"):
        CropDataBar(crop_bottom=-1)
    with pytest.raises(ValueError, match="cannot crop 8 data-bar rows from an image of height 8"):
        CropDataBar(crop_bottom=8)(torch.zeros(1, 8, 8))


# ------------------------------------------------------------------------------------------
# mask binarisation


@pytest.mark.parametrize(
    "dtype, values",
    [
        (np.uint8, [0, 127, 128, 255]),
        (np.uint16, [0, 32767, 32768, 65535]),
        (np.float32, [0.0, 0.5, 0.5001, 1.0]),
    ],
    ids=["uint8", "uint16", "float32"],
)
def test_binarize_mask_thresholds_at_half_of_dtype_range(write_tiff, dtype, values):
    mask = np.array([values, values[::-1]], dtype=dtype)
    loaded = LoadMicrograph()(write_tiff("mask.tif", mask))
    binary = BinarizeMask()(loaded)
    expected = np.array([[0, 0, 1, 1], [1, 1, 0, 0]], np.float32)
    assert isinstance(binary, MetaTensor)
    assert binary.dtype == torch.float32
    np.testing.assert_array_equal(binary[0].numpy(), expected)
    assert binary.meta["source_max"] == loaded.meta["source_max"]


def test_binarize_mask_without_meta_uses_unit_range():
    binary = BinarizeMask()(torch.tensor([[[0.0, 0.5, 0.75, 1.0]]]))
    torch.testing.assert_close(binary, torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]))


def test_binarize_maskd_leaves_image_alone(pair_with_bar):
    files, image, mask = pair_with_bar
    data = BinarizeMaskd(keys="label")(LoadMicrographd(keys=KEYS)(files))
    np.testing.assert_array_equal(data["label"][0].numpy(), mask / 255)
    np.testing.assert_array_equal(data["image"][0].numpy(), image)


# ------------------------------------------------------------------------------------------
# shape check


def test_validation_pipeline_rejects_mismatched_pair(write_tiff):
    image_path = write_tiff("a.tif", np.zeros((40, 50), np.uint8))
    mask_path = write_tiff("a_m.tif", np.zeros((50, 40), np.uint8))
    with pytest.raises(Exception) as error:  # MONAI's Compose wraps the ValueError in a RuntimeError
        validation_transforms()({"image": str(image_path), "label": str(mask_path)})
    cause = error.value if isinstance(error.value, ValueError) else error.value.__cause__
    assert isinstance(cause, ValueError)
    assert str(mask_path) in str(cause)


# ------------------------------------------------------------------------------------------
# training pipeline

ROI = (32, 32)
NUM_SAMPLES = 8


@pytest.fixture
def small_particle_pair(write_tiff):
    """128x128, no data bar: one 8x8 particle in a corner, background everywhere else."""
    mask = np.zeros((128, 128), np.uint8)
    mask[8:16, 8:16] = 255
    image = np.where(mask > 0, 200, 40).astype(np.uint8)
    image = image + np.random.default_rng(0).integers(0, 10, image.shape, dtype=np.uint8)
    return {"image": str(write_tiff("particle.tif", image)), "label": str(write_tiff("particle_m.tif", mask))}


def run_training_pipeline(files, seed, **kwargs):
    transforms = train_transforms(roi_size=ROI, num_samples=NUM_SAMPLES, crop_bottom=0, **kwargs)
    transforms.set_random_state(seed=seed)
    return transforms(files)


def test_train_transforms_crop_particles_and_background(small_particle_pair):
    samples = run_training_pipeline(small_particle_pair, seed=0)
    assert isinstance(samples, list) and len(samples) == NUM_SAMPLES
    with_particle = 0
    for sample in samples:
        assert sample["image"].shape == (1, *ROI)
        assert sample["label"].shape == (1, *ROI)
        assert not isinstance(sample["image"], MetaTensor)  # meta dropped for training batches
        assert set(torch.unique(sample["label"]).tolist()) <= {0.0, 1.0}
        if sample["label"].sum() > 0:
            with_particle += 1
            # the particle is bright in the image too (image and mask cropped and augmented together)
            assert sample["image"][sample["label"] > 0].mean() > sample["image"][sample["label"] == 0].mean()
    assert 0 < with_particle < NUM_SAMPLES  # a particle of 0.4 % of the image still appears in crops


def test_all_crops_hold_a_particle_with_foreground_fraction_one(small_particle_pair):
    samples = run_training_pipeline(small_particle_pair, seed=1, foreground_fraction=1.0)
    assert all(sample["label"].sum() > 0 for sample in samples)


def test_train_transforms_same_seed_same_crops(small_particle_pair):
    first = run_training_pipeline(small_particle_pair, seed=3)
    second = run_training_pipeline(small_particle_pair, seed=3)
    other = run_training_pipeline(small_particle_pair, seed=4)
    for a, b in zip(first, second):
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        torch.testing.assert_close(a["label"], b["label"], rtol=0, atol=0)
    assert any(not torch.equal(a["image"], c["image"]) for a, c in zip(first, other))


def test_set_determinism_gives_identical_crops(small_particle_pair):
    try:
        results = []
        for _ in range(2):
            set_determinism(seed=11)
            transforms = train_transforms(roi_size=ROI, num_samples=2, crop_bottom=0)
            results.append(transforms(small_particle_pair))
    finally:
        set_determinism(seed=None)
    for a, b in zip(*results):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_training_crops_larger_than_the_image_are_padded(write_tiff):
    mask = np.zeros((20, 24), np.uint8)
    mask[5:10, 5:10] = 255
    files = {"image": str(write_tiff("tiny.tif", mask)), "label": str(write_tiff("tiny_m.tif", mask))}
    samples = run_training_pipeline(files, seed=0)
    assert all(sample["image"].shape == (1, *ROI) for sample in samples)


STRIPE_WIDTH = 4  # particles 4 px wide, side by side, split by one-pixel background lines


def striped_mask(shape: tuple[int, int]) -> np.ndarray:
    """Touching vertical stripes as in a BAM mask: every fifth column is a separation line."""
    mask = np.full(shape, 255, np.uint8)
    mask[:, STRIPE_WIDTH :: STRIPE_WIDTH + 1] = 0
    return mask


def narrowest_particle_px(mask: np.ndarray) -> int:
    """The largest short side of the particles' bounding boxes: a stripe's width, or more where two merged."""
    labels = label_particles(mask)
    boxes = [box for box in ndimage.find_objects(labels) if box is not None]
    return max(min(rows.stop - rows.start, cols.stop - cols.start) for rows, cols in boxes)


def test_zoom_out_merges_particles_and_separate_particles_splits_them_again():
    mask = torch.as_tensor(striped_mask((64, 64)) > 0, dtype=torch.float32)[None]
    stripes = int(label_particles(mask[0].numpy()).max())
    zoom_out = Zoom(ZOOM_RANGE[0], mode="nearest", keep_size=False)
    assert label_particles(zoom_out(mask)[0].numpy()).max() < stripes  # the defect: skipped columns held lines
    separated = SeparateParticles()(zoom_out(LabelParticles()(mask)))
    assert set(torch.unique(separated).tolist()) == {0.0, 1.0}
    assert label_particles(separated[0].numpy()).max() == stripes


def test_separate_particles_keeps_a_bam_mask_as_it_is():
    mask = torch.as_tensor(striped_mask((20, 30)) > 0, dtype=torch.float32)[None]
    torch.testing.assert_close(SeparateParticles()(LabelParticles()(mask)), mask, rtol=0, atol=0)


STRIPES_ROI = (64, 64)
# a zoomed-out crop is edge-padded back to size (at most 3.2 px a side at zoom 0.9), which widens the stripes
# at its border: only the crop's interior is looked at
PADDED_BORDER_PX = 8


@pytest.mark.parametrize("separation_target", [None, "weight_and_relative_border"])
def test_training_crops_keep_touching_particles_apart(write_tiff, separation_target):
    mask = striped_mask((128, 128))
    files = {"image": str(write_tiff("stripes.tif", mask)), "label": str(write_tiff("stripes_m.tif", mask))}
    widest_stripe = int(np.ceil(STRIPE_WIDTH * ZOOM_RANGE[1]))
    inside = slice(PADDED_BORDER_PX, -PADDED_BORDER_PX)
    for seed in range(4):
        transforms = train_transforms(roi_size=STRIPES_ROI, num_samples=NUM_SAMPLES, crop_bottom=0, separation_target=separation_target)
        transforms.set_random_state(seed=seed)
        for sample in transforms(files):
            assert narrowest_particle_px(sample["label"][0, inside, inside].numpy()) <= widest_stripe


def test_bad_foreground_fraction_raises():
    with pytest.raises(ValueError, match="foreground_fraction must be in"):
        train_transforms(foreground_fraction=1.5)


# ------------------------------------------------------------------------------------------
# intensity normalisation


def test_zscore_intensity(pair_with_bar):
    files, _, _ = pair_with_bar
    image = validation_transforms(intensity="zscore")(files)["image"]
    assert float(image.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(image.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)


def test_unit_intensity(pair_with_bar):
    files, _, _ = pair_with_bar
    data = validation_transforms(intensity="unit")(files)
    assert float(data["image"].min()) == 0.0
    assert float(data["image"].max()) == 1.0
    assert set(torch.unique(data["label"]).tolist()) == {0.0, 1.0}  # the mask is not rescaled


@pytest.mark.parametrize("bad", ["minmax", "", "ZSCORE"])
def test_bad_intensity_raises(bad):
    with pytest.raises(ValueError, match=re.escape(f"intensity must be one of {INTENSITY_MODES}, got {bad!r}")):
        intensity_transform(bad)
    with pytest.raises(ValueError, match="intensity must be one of"):
        train_transforms(intensity=bad)
    with pytest.raises(ValueError, match="intensity must be one of"):
        inference_transforms(intensity=bad)


def test_a_mask_of_another_shape_names_both_files_and_shapes(write_tiff):
    image_path = write_tiff("img_01.tif", np.zeros((40, 50), np.uint8))
    mask_path = write_tiff("img_01_m.tif", np.zeros((40, 60), np.uint8))
    data = LoadMicrographd(keys=KEYS)({"image": str(image_path), "label": str(mask_path)})
    with pytest.raises(ValueError, match="has shape") as error:
        FitMaskToImaged(keys="label")(data)
    assert "img_01_m.tif" in str(error.value) and "img_01.tif" in str(error.value)
    assert "(40, 60)" in str(error.value) and "(40, 50)" in str(error.value)
