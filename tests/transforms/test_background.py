"""Background flattening (rformer_monai.transforms.background): a smooth gradient under synthetic particles
is estimated and removed, the particles stay."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.transforms import inference_transforms
from rformer_monai.transforms.background import (
    BACKGROUND_FLATTENED_KEY,
    FlattenBackground,
    estimate_background,
)
from rformer_monai.transforms.contrast import CONTRAST_SCORE_KEY, contrast_score
from rformer_monai.workflows.errors import SettingsError
from rformer_monai.workflows.settings import check_settings

SIZE = (300, 410)  # not multiples of the shrink factor
GRADIENT_GREY_LEVELS = 80.0


def _hazy(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, mask = render_micrograph(SIZE, rng=seed, mean_diameter_px=12.0, coverage=0.15)
    rows, cols = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    gradient = GRADIENT_GREY_LEVELS * (cols / SIZE[1] + 0.5 * rows / SIZE[0]) / 1.5
    return image.astype(np.float64) + gradient, mask > 0, gradient


def test_background_follows_a_smooth_gradient():
    hazy, mask, gradient = _hazy()
    background = estimate_background(hazy)
    assert background.shape == SIZE
    film = ~mask
    # the estimate follows the gradient, and what is left on the film (texture, noise) no longer does
    residual = (hazy - background)[film]
    assert np.corrcoef(hazy[film], gradient[film])[0, 1] > 0.7
    assert abs(np.corrcoef(residual, gradient[film])[0, 1]) < 0.2
    assert np.corrcoef(background[film], gradient[film])[0, 1] > 0.95


def test_flattening_keeps_the_particles_bright_and_the_meta():
    hazy, mask, _ = _hazy(1)
    meta = {"filename_or_obj": "hazy.tif"}
    image = MetaTensor(torch.as_tensor(hazy[None], dtype=torch.float32), meta=meta)
    flat = FlattenBackground()(image)
    assert isinstance(flat, MetaTensor) and flat.shape == image.shape and flat.dtype == torch.float32
    assert flat.meta["filename_or_obj"] == "hazy.tif" and flat.meta[BACKGROUND_FLATTENED_KEY] is True
    values = flat[0].numpy()
    assert values[mask].mean() > values[~mask].mean() + 30
    assert values.min() == pytest.approx(float(hazy.min()), abs=1e-3)


def test_flat_film_is_left_nearly_alone():
    image, _ = render_micrograph(SIZE, rng=2, mean_diameter_px=12.0, coverage=0.1)
    flat = FlattenBackground()(torch.as_tensor(image[None], dtype=torch.float32))[0].numpy()
    unit = (image - image.min()) / (image.max() - image.min())
    flat_unit = (flat - flat.min()) / (flat.max() - flat.min())
    assert np.corrcoef(unit.ravel(), flat_unit.ravel())[0, 1] > 0.97


def test_pipeline_option_and_bad_input(tmp_path):
    hazy, _, _ = _hazy(3)
    tifffile.imwrite(tmp_path / "hazy.tif", np.clip(hazy, 0, 255).astype(np.uint8))
    item = inference_transforms(flatten_background=True, crop_bottom=0)({"image": str(tmp_path / "hazy.tif")})
    assert item["image"].shape == (1, *SIZE) and item["image"].meta[BACKGROUND_FLATTENED_KEY]
    assert item["image"].meta[CONTRAST_SCORE_KEY] == pytest.approx(contrast_score(item["image"]))
    assert float(item["image"].min()) == 0.0 and float(item["image"].max()) == 1.0
    with pytest.raises(ValueError, match="image must be a non-empty 2-D"):
        estimate_background(np.zeros((2, 3, 4)))
    with pytest.raises(SettingsError, match="setting 'flatten_background' must be True or False"):
        check_settings(flatten_background="yes")
    check_settings(flatten_background=True)
