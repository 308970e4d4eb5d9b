"""Tests for the synthetic SEM generator (rformer_monai.data.synthetic)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from rformer_monai.data.synthetic import (
    SYNTHETIC_PIXEL_SIZE_NM,
    labels_to_mask,
    make_synthetic_dataset,
    render_micrograph,
    render_micrograph_instances,
)

FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)
OLD_MTIME_NS = 1_000_000_000 * 10**9  # 2001-09-09: any file rewritten afterwards is newer
SMALL_SIZE = (96, 128)


def count_components(mask: np.ndarray) -> int:
    return ndi.label(mask > 0, structure=FOUR_CONNECTED)[1]


def touching_pairs(labels: np.ndarray) -> int:
    """Number of 4-adjacent pixel pairs carrying two different particle labels."""
    horizontal = (labels[:, :-1] != labels[:, 1:]) & (labels[:, :-1] > 0) & (labels[:, 1:] > 0)
    vertical = (labels[:-1, :] != labels[1:, :]) & (labels[:-1, :] > 0) & (labels[1:, :] > 0)
    return int(horizontal.sum() + vertical.sum())


# ------------------------------------------------------------------------------------------
# render_micrograph


def test_same_seed_gives_identical_arrays():
    first = render_micrograph(SMALL_SIZE, 7)
    second = render_micrograph(SMALL_SIZE, 7)
    from_generator = render_micrograph(SMALL_SIZE, np.random.default_rng(7))
    for a, b, c in zip(first, second, from_generator):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_different_seeds_give_different_images():
    image_a, mask_a = render_micrograph(SMALL_SIZE, 1)
    image_b, mask_b = render_micrograph(SMALL_SIZE, 2)
    assert not np.array_equal(image_a, image_b)
    assert not np.array_equal(mask_a, mask_b)


@pytest.mark.parametrize(
    "image_size, data_bar_rows", [((64, 64), 0), ((96, 128), 20), ((37, 150), 5), ((1, 1), 0)]
)
def test_dtype_shape_and_mask_values(image_size, data_bar_rows):
    image, mask = render_micrograph(image_size, 0, data_bar_rows=data_bar_rows)
    assert image.shape == mask.shape == image_size
    assert image.dtype == mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 255}


def test_zero_coverage_gives_empty_mask():
    image, mask = render_micrograph(SMALL_SIZE, 0, coverage=0.0)
    assert not mask.any()
    assert image.std() > 0  # background texture and noise are still there


def test_labels_to_mask_separates_touching_squares():
    labels = np.zeros((12, 20), dtype=np.int32)
    labels[2:10, 2:10] = 1
    labels[2:10, 10:18] = 2  # touches particle 1 along a vertical edge
    labels[10:12, 2:10] = 3  # touches particle 1 along a horizontal edge
    mask = labels_to_mask(labels)
    assert count_components(labels > 0) == 1  # without separation: one blob
    assert count_components(mask) == 3
    assert not mask[2:10, 9].any()  # the line is drawn inside the left particle, one pixel wide
    assert mask[2:9, 8].all() and mask[2:10, 10].all()
    assert not mask[9, 2:9].any() and mask[10, 2:10].all()


def test_labels_to_mask_keeps_isolated_particles_whole():
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[1:4, 1:4] = 5
    labels[6:9, 6:9] = 2
    np.testing.assert_array_equal(labels_to_mask(labels), np.where(labels > 0, 255, 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_components_are_exactly_the_visible_particles(seed):
    image, mask, labels = render_micrograph_instances((256, 256), seed, coverage=0.25)
    visible = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(visible, np.arange(1, len(visible) + 1))
    np.testing.assert_array_equal(mask, labels_to_mask(labels))
    # the scene really has touching particles that would merge without the separation lines
    assert touching_pairs(labels) > 0
    assert count_components(labels > 0) < len(visible)
    # with the lines: one component per visible particle, none spanning two particles
    components, num_components = ndi.label(mask > 0, structure=FOUR_CONNECTED)
    assert num_components == len(visible)
    pairs = np.unique(np.stack([components[mask > 0], labels[mask > 0]]), axis=1)
    assert pairs.shape[1] == num_components  # each component maps to one label, and vice versa
    assert len(np.unique(pairs[1])) == num_components


@pytest.mark.parametrize("coverage", [0.05, 0.1, 0.3])
def test_foreground_fraction_matches_coverage(coverage):
    fractions = [(render_micrograph((512, 512), seed, coverage=coverage)[1] > 0).mean() for seed in range(2)]
    np.testing.assert_allclose(fractions, coverage, rtol=0.15)


@pytest.mark.parametrize("mean_diameter_px", [16.0, 40.0])
def test_particle_sizes_follow_mean_diameter(mean_diameter_px):
    _, mask = render_micrograph((512, 512), 3, mean_diameter_px=mean_diameter_px, coverage=0.15)
    components, num_components = ndi.label(mask > 0, structure=FOUR_CONNECTED)
    areas = np.bincount(components.ravel())[1:]
    equivalent_diameters = 2.0 * np.sqrt(areas / np.pi)
    assert num_components >= 10
    # occlusion and separation lines make visible particles smaller than the drawn ones
    assert mean_diameter_px / 2.0 < np.median(equivalent_diameters) < mean_diameter_px * 1.25


def test_size_spread_grows_with_diameter_sigma():
    def log_spread(diameter_sigma: float) -> float:
        _, mask = render_micrograph((512, 512), 4, diameter_sigma=diameter_sigma, coverage=0.05)
        components, _ = ndi.label(mask > 0, structure=FOUR_CONNECTED)
        areas = np.bincount(components.ravel())[1:]
        return float(np.std(np.log(areas)))

    assert log_spread(0.6) > log_spread(0.1)


def test_particles_brighter_than_background():
    image, mask = render_micrograph((256, 256), 5)
    particle = image[mask > 0].astype(float).mean()
    background = image[mask == 0].astype(float).mean()
    assert particle > background + 50


def test_data_bar_is_dark_with_bright_text_and_empty_mask():
    data_bar_rows = 40
    image, mask = render_micrograph((256, 384), 6, data_bar_rows=data_bar_rows, coverage=0.3)
    bar = image[-data_bar_rows:]
    assert bar.mean() < 40
    assert (bar > 200).sum() > 50
    assert not mask[-data_bar_rows:].any()
    assert mask[:-data_bar_rows].any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": (0, 64)}, "image_size"),
        ({"image_size": (64,)}, "image_size"),
        ({"image_size": (64.5, 64)}, "image_size"),
        ({"coverage": 1.0}, "coverage"),
        ({"coverage": -0.1}, "coverage"),
        ({"mean_diameter_px": 0.0}, "mean_diameter_px"),
        ({"diameter_sigma": -1.0}, "diameter_sigma"),
        ({"data_bar_rows": 64}, "data_bar_rows"),
        ({"data_bar_rows": -1}, "data_bar_rows"),
        ({"rng": -3}, "rng"),
        ({"rng": "seed"}, "rng"),
    ],
)
def test_render_rejects_bad_arguments(kwargs, match):
    arguments = {"image_size": (64, 64), "rng": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        render_micrograph(**arguments)


def test_labels_to_mask_rejects_non_2d():
    with pytest.raises(ValueError, match="labels"):
        labels_to_mask(np.zeros((2, 3, 4), dtype=np.int32))


# ------------------------------------------------------------------------------------------
# make_synthetic_dataset


def set_old_mtimes(datalist: list[dict[str, str]]) -> None:
    for item in datalist:
        for path in item.values():
            os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))


def mtimes(datalist: list[dict[str, str]]) -> list[int]:
    return [os.stat(path).st_mtime_ns for item in datalist for path in item.values()]


def test_dataset_writes_files_and_datalist(tmp_path):
    datalist = make_synthetic_dataset(tmp_path / "synthetic", num_images=3, image_size=SMALL_SIZE, seed=4)
    assert len(datalist) == 3
    for index, item in enumerate(datalist):
        assert set(item) == {"image", "label"}
        image_path, label_path = Path(item["image"]), Path(item["label"])
        assert image_path.is_absolute() and label_path.is_absolute()
        assert image_path == tmp_path / "synthetic" / "images" / f"synthetic_{index:03d}.tif"
        assert label_path == tmp_path / "synthetic" / "masks" / f"synthetic_{index:03d}_mask.tif"
        image, mask = tifffile.imread(image_path), tifffile.imread(label_path)
        expected_image, expected_mask = render_micrograph(SMALL_SIZE, np.random.default_rng([4, index]))
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(mask, expected_mask)
    first, second = (tifffile.imread(item["image"]) for item in datalist[:2])
    assert not np.array_equal(first, second)
    assert json.loads((tmp_path / "synthetic" / "synthetic.json").read_text())["seed"] == 4


def test_dataset_reuses_cache_and_regenerates_on_change(tmp_path):
    arguments = {"num_images": 3, "image_size": SMALL_SIZE, "seed": 0}
    datalist = make_synthetic_dataset(tmp_path, **arguments)
    set_old_mtimes(datalist)
    assert make_synthetic_dataset(tmp_path, **arguments) == datalist
    assert mtimes(datalist) == [OLD_MTIME_NS] * 6  # nothing rewritten

    old_image = tifffile.imread(datalist[0]["image"])
    reseeded = make_synthetic_dataset(tmp_path, **{**arguments, "seed": 1})
    assert all(mtime != OLD_MTIME_NS for mtime in mtimes(reseeded))
    assert not np.array_equal(tifffile.imread(reseeded[0]["image"]), old_image)

    fewer = make_synthetic_dataset(tmp_path, **{**arguments, "seed": 1, "num_images": 2})
    assert sorted(path.name for path in (tmp_path / "images").iterdir()) == [
        "synthetic_000.tif",
        "synthetic_001.tif",
    ]
    assert len(fewer) == 2


def test_dataset_regenerates_missing_files(tmp_path):
    datalist = make_synthetic_dataset(tmp_path, num_images=2, image_size=SMALL_SIZE)
    os.remove(datalist[1]["label"])
    make_synthetic_dataset(tmp_path, num_images=2, image_size=SMALL_SIZE)
    assert Path(datalist[1]["label"]).is_file()


@pytest.mark.parametrize("pixel_size_nm", [SYNTHETIC_PIXEL_SIZE_NM, 3.2])
def test_dataset_pixel_size_in_resolution_tags(tmp_path, pixel_size_nm):
    datalist = make_synthetic_dataset(
        tmp_path, num_images=1, image_size=SMALL_SIZE, pixel_size_nm=pixel_size_nm
    )
    for path in datalist[0].values():
        with tifffile.TiffFile(path) as tiff:
            tags = tiff.pages[0].tags
            assert tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            for name in ("XResolution", "YResolution"):
                numerator, denominator = tags[name].value
                assert 1e7 * denominator / numerator == pytest.approx(pixel_size_nm, rel=1e-6)


def test_dataset_without_pixel_size_writes_no_physical_unit(tmp_path):
    datalist = make_synthetic_dataset(tmp_path, num_images=1, image_size=SMALL_SIZE, pixel_size_nm=None)
    with tifffile.TiffFile(datalist[0]["image"]) as tiff:
        unit = tiff.pages[0].tags.get("ResolutionUnit")
        assert unit is None or unit.value == tifffile.RESUNIT.NONE


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_images": 0}, "num_images"),
        ({"image_size": (-5, 64)}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"data_bar_rows": 64}, "data_bar_rows"),
        ({"pixel_size_nm": 0.0}, "pixel_size_nm"),
    ],
)
def test_dataset_rejects_bad_arguments(tmp_path, kwargs, match):
    arguments = {"num_images": 1, "image_size": (64, 64), **kwargs}
    with pytest.raises(ValueError, match=match):
        make_synthetic_dataset(tmp_path, **arguments)
    assert not (tmp_path / "images").exists()
