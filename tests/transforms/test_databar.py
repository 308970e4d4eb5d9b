"""Tests for the data-bar detector: exact bar rows on synthetic micrographs, no crop without a bar, real BAM bars."""

from __future__ import annotations

import numpy as np
import pytest

from rformer_monai.transforms.databar import (
    MAX_ROWS_BELOW_BAR,
    MIN_BAR_ROWS,
    detect_data_bar,
)
from rformer_monai.transforms.io import read_micrograph

BAM_BAR_TOP_ROW = 712


@pytest.mark.parametrize(
    "shape, bar_rows",
    [
        ((768, 1024), 56),  # the BAM Zeiss geometry
        ((480, 640), 40),
        ((200, 256), 20),
        ((100, 128), MIN_BAR_ROWS),  # the thinnest bar taken for one
        ((100, 128), 29),  # just inside the searched bottom 30 %
        ((128, 100), 16),  # portrait
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_bar_is_detected_at_its_row(micrograph_with_bar, shape, bar_rows, dtype):
    image = micrograph_with_bar(shape, bar_rows, seed=1, dtype=dtype)
    assert detect_data_bar(image) == bar_rows


def test_float_image_with_bar(micrograph_with_bar):
    image = micrograph_with_bar((200, 256), 24, seed=2).astype(np.float32) / 255.0
    assert detect_data_bar(image) == 24


def test_grey_bar_background_is_detected(micrograph_with_bar):
    image = micrograph_with_bar((200, 256), 24, seed=3)
    bar = image[-24:]
    bar[bar == 0] = 200  # a light-grey bar: any flat value counts, not only black
    assert detect_data_bar(image) == 24


@pytest.mark.parametrize("stray_rows", range(1, MAX_ROWS_BELOW_BAR + 1))
def test_stray_rows_below_the_bar_are_cropped_too(micrograph_with_bar, stray_rows):
    bar_rows = 30
    image = micrograph_with_bar((200, 256), bar_rows + stray_rows, seed=4)
    noise = np.random.default_rng(5).integers(0, 256, (stray_rows, 256), dtype=np.uint8)
    image[-stray_rows:] = noise  # e.g. a thin noisy border under the bar
    assert detect_data_bar(image) == bar_rows + stray_rows


def test_too_many_stray_rows_hide_the_bar(micrograph_with_bar):
    stray_rows = MAX_ROWS_BELOW_BAR + 1
    image = micrograph_with_bar((200, 256), 30 + stray_rows, seed=4)
    image[-stray_rows:] = np.random.default_rng(5).integers(0, 256, (stray_rows, 256), dtype=np.uint8)
    assert detect_data_bar(image) == 0


def test_bar_thinner_than_the_minimum_is_not_a_bar(micrograph_with_bar):
    image = micrograph_with_bar((200, 256), MIN_BAR_ROWS - 1, seed=6)
    assert detect_data_bar(image) == 0


def test_bar_filling_the_whole_search_window_is_not_a_bar(micrograph_with_bar):
    # flat up to 30 % of the height: taken for a flat image region, not a bar on a micrograph
    image = micrograph_with_bar((100, 128), 30, seed=7)
    assert detect_data_bar(image) == 0


def horizontal_gradient(shape):
    return np.tile(np.linspace(0, 255, shape[1]).round().astype(np.uint8), (shape[0], 1))


def vertical_gradient(shape):
    return np.tile(np.linspace(0, 255, shape[0]).round().astype(np.uint8)[:, None], (1, shape[1]))


@pytest.mark.parametrize(
    "make_image",
    [
        lambda shape: np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8),
        lambda shape: np.random.default_rng(0).normal(0.5, 0.1, shape).astype(np.float32),
        horizontal_gradient,
        vertical_gradient,  # every row is flat: no micrograph row above a bar
        lambda shape: np.full(shape, 128, np.uint8),
        lambda shape: np.zeros(shape, np.uint8),
        lambda shape: np.zeros(shape, np.uint16),
    ],
    ids=["noise", "float-noise", "horizontal-gradient", "vertical-gradient", "constant", "black", "black-16bit"],
)
@pytest.mark.parametrize("shape", [(200, 256), (768, 1024)])
def test_image_without_bar_is_not_cropped(make_image, shape):
    assert detect_data_bar(make_image(shape)) == 0


@pytest.mark.parametrize("shape", [(20, 64), (1, 1), (26, 10)])
def test_small_images_are_not_cropped(shape):
    assert detect_data_bar(np.zeros(shape, np.uint8)) == 0


@pytest.mark.parametrize("shape", [(1, 64, 64), (64,), (2, 3, 64, 64)])
def test_not_2d_raises(shape):
    with pytest.raises(ValueError, match=r"image must be 2-D \(H, W\)"):
        detect_data_bar(np.zeros(shape, np.uint8))


def test_bam_bars_start_at_row_712(bam_dataset_dir):
    from rformer_monai.data.discovery import discover_pairs

    pairs = discover_pairs(bam_dataset_dir)
    assert len(pairs) == 30
    for pair in pairs:
        image = read_micrograph(pair["image"]).array
        assert image.shape[0] - detect_data_bar(image) == BAM_BAR_TOP_ROW, pair["image"]
