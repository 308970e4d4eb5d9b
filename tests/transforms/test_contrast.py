"""Particle contrast (rformer_monai.transforms.contrast): the auto decision on synthetic bright and dark
micrographs, a micrograph and its inverse giving the network the same input, and the setting's validation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.transforms import inference_transforms, train_transforms, validation_transforms
from rformer_monai.transforms.contrast import (
    CONTRAST_KEY,
    CONTRAST_MODES,
    CONTRAST_SCORE_KEY,
    UNCERTAIN_SCORE,
    ParticleContrast,
    ParticleContrastd,
    contrast_score,
    decide_contrast,
    invert_grey_values,
)
from rformer_monai.workflows.errors import SettingsError
from rformer_monai.workflows.settings import check_settings

GREY_MAX = 255
SEEDS = range(4)
COVERAGES = (0.002, 0.01, 0.05, 0.1, 0.3)  # 0.002: decided at the 0.1 % tails


def _micrograph(seed: int, coverage: float, size=(192, 192), data_bar_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return render_micrograph(size, rng=seed, mean_diameter_px=12.0, coverage=coverage, data_bar_rows=data_bar_rows)


def _dark(image: np.ndarray) -> np.ndarray:
    """Dark particles on a bright film: the synthetic SEM micrograph inverted."""
    return (GREY_MAX - image.astype(np.int16)).astype(np.uint8)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("coverage", COVERAGES)
def test_auto_decides_bright_and_dark_synthetic_micrographs(seed, coverage):
    image, _ = _micrograph(seed, coverage)
    assert decide_contrast(image)[0] == "bright"
    assert decide_contrast(_dark(image))[0] == "dark"


def test_score_is_negated_by_inversion_and_unchanged_by_affine_grey_values():
    image, _ = _micrograph(0, 0.1)
    score = contrast_score(image)
    assert score > 0.5
    assert contrast_score(_dark(image)) == pytest.approx(-score)
    assert contrast_score(3.0 * image.astype(np.float64) + 17.0) == pytest.approx(score)


def test_images_without_a_particle_tail_count_as_bright(caplog):
    assert decide_contrast(np.full((32, 32), 7.0)) == ("bright", 0.0)
    noise = np.random.default_rng(0).normal(100.0, 10.0, (64, 64))
    assert abs(contrast_score(noise)) < UNCERTAIN_SCORE
    assert decide_contrast(noise)[0] == decide_contrast(-noise)[0] == "bright"
    with caplog.at_level(logging.INFO, logger="rformer_monai.transforms.contrast"):
        ParticleContrast("auto")(MetaTensor(torch.as_tensor(noise[None]), meta={"filename_or_obj": "noise.tif"}))
    assert "noise.tif: bright particles" in caplog.text and "uncertain" in caplog.text
    with pytest.raises(ValueError, match="image must hold at least one pixel"):
        contrast_score(np.zeros((0, 4)))


def test_inversion_is_one_minus_x_after_the_min_max_normalisation():
    values = torch.tensor([[[3.0, 10.0], [7.0, 250.0]]])
    unit = (values - values.min()) / (values.max() - values.min())
    inverted = invert_grey_values(values)
    assert torch.allclose((inverted - inverted.min()) / (inverted.max() - inverted.min()), 1.0 - unit)


@pytest.mark.parametrize("transforms", [inference_transforms, validation_transforms])
@pytest.mark.parametrize("seed", SEEDS)
def test_micrograph_and_its_inverse_give_the_network_the_same_input(tmp_path, transforms, seed):
    image, mask = _micrograph(seed, 0.1, size=(160, 192), data_bar_rows=20)
    tifffile.imwrite(tmp_path / "bright.tif", image)
    tifffile.imwrite(tmp_path / "dark.tif", _dark(image))
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    pipeline = transforms(contrast="auto", crop_bottom=20)  # the synthetic bar is noisy: not detected
    items = {}
    for name in ("bright", "dark"):
        data = {"image": str(tmp_path / f"{name}.tif")}
        if transforms is validation_transforms:
            data["label"] = str(tmp_path / "mask.tif")
        items[name] = pipeline(data)
    bright, dark = items["bright"]["image"], items["dark"]["image"]
    assert bright.meta[CONTRAST_KEY] == "bright" and dark.meta[CONTRAST_KEY] == "dark"
    assert bright.shape == dark.shape == (1, 140, 192)  # the data bar cropped from both
    assert torch.equal(bright.as_tensor(), dark.as_tensor())
    assert bright.meta[CONTRAST_SCORE_KEY] > 0
    assert bright.meta[CONTRAST_SCORE_KEY] == pytest.approx(dark.meta[CONTRAST_SCORE_KEY])
    if transforms is validation_transforms:
        assert torch.equal(items["bright"]["label"].as_tensor(), items["dark"]["label"].as_tensor())


def test_forced_contrast_is_applied_as_told():
    image, _ = _micrograph(1, 0.1)
    tensor = MetaTensor(torch.as_tensor(image[None], dtype=torch.float32), meta={"filename_or_obj": "x.tif"})
    kept = ParticleContrast("bright")(tensor.clone())
    inverted = ParticleContrast("dark")(tensor.clone())
    assert kept.meta[CONTRAST_KEY] == "bright" and inverted.meta[CONTRAST_KEY] == "dark"
    assert torch.equal(kept.as_tensor(), tensor.as_tensor())
    assert torch.equal(inverted.as_tensor(), invert_grey_values(tensor).as_tensor())
    assert inverted.meta[CONTRAST_SCORE_KEY] < 0  # the network sees dark particles: the trust check flags it


def test_auto_logs_its_decision_naming_the_file(caplog):
    image, _ = _micrograph(2, 0.1)
    meta = {"filename_or_obj": "film/x.tif"}
    tensor = MetaTensor(torch.as_tensor(_dark(image)[None], dtype=torch.float32), meta=meta)
    with caplog.at_level(logging.INFO, logger="rformer_monai.transforms.contrast"):
        ParticleContrastd(keys="image", contrast="auto")({"image": tensor})
    assert "film/x.tif: dark particles" in caplog.text


def test_dictionary_transform_gives_every_key_the_first_keys_polarity():
    image, _ = _micrograph(4, 0.1)
    dark = MetaTensor(torch.as_tensor(_dark(image)[None], dtype=torch.float32))
    other = MetaTensor(torch.as_tensor(image[None], dtype=torch.float32))  # would be read as bright on its own
    out = ParticleContrastd(keys=["image", "other"], contrast="auto")({"image": dark, "other": other.clone()})
    assert out["image"].meta[CONTRAST_KEY] == out["other"].meta[CONTRAST_KEY] == "dark"
    assert torch.equal(out["other"].as_tensor(), invert_grey_values(other).as_tensor())


def test_training_pipeline_takes_the_contrast(tmp_path):
    image, mask = _micrograph(3, 0.2, size=(128, 128))
    tifffile.imwrite(tmp_path / "dark.tif", _dark(image))
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    crops = train_transforms(roi_size=(64, 64), num_samples=2, contrast="auto")(
        {"image": str(tmp_path / "dark.tif"), "label": str(tmp_path / "mask.tif")}
    )
    assert len(crops) == 2 and crops[0]["image"].shape == (1, 64, 64)


@pytest.mark.parametrize("bad", ["inverse", "Bright", None, 1])
def test_bad_contrast_is_a_clear_error(bad):
    for build in (lambda: ParticleContrast(bad), lambda: ParticleContrastd(keys="image", contrast=bad),
                  lambda: inference_transforms(contrast=bad), lambda: train_transforms(contrast=bad)):
        with pytest.raises(ValueError, match=r"contrast must be one of \('bright', 'dark', 'auto'\), got"):
            build()
    with pytest.raises(SettingsError, match="setting 'contrast' must be one of"):
        check_settings(contrast=bad)


@pytest.mark.parametrize("good", CONTRAST_MODES)
def test_settings_accept_every_contrast(good):
    check_settings(contrast=good)
