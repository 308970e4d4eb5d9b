"""Tests for particle separation, measurement and size statistics (rformer_monai.particles.measurement)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse, polygon
from skimage.measure import regionprops

from rformer_monai.data.synthetic import render_micrograph_instances
from rformer_monai.particles import (
    DEFAULT_MIN_SIZE_PX,
    PARTICLE_COLUMNS,
    deepen_valleys,
    label_particles,
    measure_particles,
    particle_step_maps,
    separate_particles,
    separation_map,
    size_statistics,
    summarize_particles,
)

FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)
PIXEL_SIZE_NM = 2.5
DISK_RADII = (4.5, 7.5, 10.5, 15.5, 25.5)  # drawn by pixel centres: digital diameter 2 R
ONE_PIXEL = 1.0


def disks_image(radii: tuple[float, ...] = DISK_RADII, spacing: int = 60) -> np.ndarray:
    """One disk per radius, in a row, labelled 1..N from left to right."""
    labels = np.zeros((spacing + 4, spacing * len(radii)), dtype=np.int32)
    for index, radius in enumerate(radii):
        labels[disk((spacing / 2, spacing / 2 + index * spacing), radius, shape=labels.shape)] = index + 1
    return labels


def rotated_square(side: float, angle: float, shape: tuple[int, int] = (80, 80)) -> np.ndarray:
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * side / 2
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = corners @ rotation.T + np.array(shape) / 2 + 0.3
    labels = np.zeros(shape, dtype=np.int32)
    rows, columns = polygon(corners[:, 0], corners[:, 1], shape)
    labels[rows, columns] = 1
    return labels


def adjacent_labels(labels: np.ndarray) -> int:
    """Number of 4-adjacent pixel pairs carrying two different particle labels."""
    horizontal = (labels[:, :-1] != labels[:, 1:]) & (labels[:, :-1] > 0) & (labels[:, 1:] > 0)
    vertical = (labels[:-1] != labels[1:]) & (labels[:-1] > 0) & (labels[1:] > 0)
    return int(horizontal.sum() + vertical.sum())


# ------------------------------------------------------------------------------------------
# measure_particles: sizes of known shapes


def test_disks_count_and_diameters() -> None:
    columns = measure_particles(disks_image(), pixel_size_nm=None)
    diameters = 2 * np.array(DISK_RADII)
    assert columns["label"].tolist() == list(range(1, len(DISK_RADII) + 1))
    assert np.abs(columns["ecd_px"] - diameters).max() < ONE_PIXEL
    assert np.abs(columns["feret_max_px"] - diameters).max() < ONE_PIXEL
    assert np.abs(columns["feret_min_px"] - diameters).max() < ONE_PIXEL
    assert np.abs(columns["perimeter_px"] - np.pi * diameters).max() < ONE_PIXEL
    assert np.all(columns["feret_max_px"] >= columns["feret_min_px"])
    np.testing.assert_allclose(columns["aspect_ratio"], 1.0, atol=0.15)
    np.testing.assert_allclose(columns["circularity"][-3:], 1.0, atol=0.05)
    np.testing.assert_array_equal(columns["solidity"], 1.0)  # digitized convex shapes


def test_disk_centroid_and_feret_max_matches_definition() -> None:
    labels = disks_image()
    columns = measure_particles(labels, pixel_size_nm=None)
    np.testing.assert_allclose(columns["centroid_y_px"], 30.0)
    np.testing.assert_allclose(columns["centroid_x_px"], 30.0 + 60.0 * np.arange(len(DISK_RADII)))
    # our Feret max is at most regionprops' (which measures the hull of the pixel corners)
    reference = np.array([region.feret_diameter_max for region in regionprops(labels)])
    assert np.all(columns["feret_max_px"] <= reference + 1e-9)


@pytest.mark.parametrize("angle", [0.0, 0.4, 1.1])
def test_ellipse_feret_and_aspect_ratio(angle: float) -> None:
    semi_major, semi_minor = 25.5, 10.5
    labels = np.zeros((90, 90), dtype=np.int32)
    labels[ellipse(45, 45, semi_minor, semi_major, rotation=angle)] = 1
    columns = measure_particles(labels, pixel_size_nm=None)
    assert abs(columns["feret_max_px"][0] - 2 * semi_major) < ONE_PIXEL
    assert abs(columns["feret_min_px"][0] - 2 * semi_minor) < ONE_PIXEL
    assert columns["aspect_ratio"][0] == pytest.approx(semi_major / semi_minor, rel=0.06)
    assert columns["solidity"][0] == 1.0
    assert columns["ecd_px"][0] == pytest.approx(2 * math.sqrt(semi_major * semi_minor), abs=ONE_PIXEL)


@pytest.mark.parametrize("angle", [0.3, 0.5, 1.0])
def test_square_feret_solidity_circularity(angle: float) -> None:
    side = 30.0
    columns = measure_particles(rotated_square(side, angle), pixel_size_nm=None)
    assert abs(columns["feret_max_px"][0] - side * math.sqrt(2)) < ONE_PIXEL
    assert abs(columns["feret_min_px"][0] - side) < ONE_PIXEL
    assert columns["solidity"][0] == 1.0
    assert columns["circularity"][0] == pytest.approx(math.pi / 4, abs=0.03)


def test_axis_aligned_square_exact_sides() -> None:
    side = 20
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[10 : 10 + side, 5 : 5 + side] = 7
    columns = measure_particles(labels, pixel_size_nm=None)
    assert columns["label"].tolist() == [7]
    assert columns["area_px2"][0] == side**2
    assert columns["feret_min_px"][0] == pytest.approx(side)
    assert abs(columns["feret_max_px"][0] - side * math.sqrt(2)) < ONE_PIXEL
    assert columns["solidity"][0] == 1.0


def test_degenerate_particles() -> None:
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[5, 5] = 1  # one pixel
    labels[10, 2:12] = 2  # a horizontal line
    columns = measure_particles(labels, pixel_size_nm=None)
    assert columns["area_px2"].tolist() == [1.0, 10.0]
    assert columns["solidity"].tolist() == [1.0, 1.0]
    assert np.all(np.isfinite(columns["feret_min_px"])) and np.all(columns["feret_min_px"] > 0)
    assert columns["feret_max_px"][1] == pytest.approx(10.0, abs=ONE_PIXEL)


def test_empty_labels_give_empty_columns() -> None:
    columns = measure_particles(np.zeros((10, 10), dtype=np.int32), pixel_size_nm=1.0)
    assert all(len(values) == 0 for values in columns.values())
    assert len(columns) == len(PARTICLE_COLUMNS)


# ------------------------------------------------------------------------------------------
# units, warning, edge flags


def test_pixel_size_converts_units() -> None:
    labels = disks_image()
    in_px = measure_particles(labels, pixel_size_nm=None)
    in_nm = measure_particles(labels, pixel_size_nm=PIXEL_SIZE_NM)
    assert list(in_nm) == [
        "label", "area_nm2", "ecd_nm", "perimeter_nm", "feret_max_nm", "feret_min_nm",
        "aspect_ratio", "circularity", "solidity", "centroid_x_nm", "centroid_y_nm", "touches_edge",
    ]  # fmt: skip
    np.testing.assert_allclose(in_nm["area_nm2"], in_px["area_px2"] * PIXEL_SIZE_NM**2)
    for name in ("ecd", "perimeter", "feret_max", "feret_min", "centroid_x", "centroid_y"):
        np.testing.assert_allclose(in_nm[f"{name}_nm"], in_px[f"{name}_px"] * PIXEL_SIZE_NM)
    for name in ("aspect_ratio", "circularity", "solidity"):
        np.testing.assert_allclose(in_nm[name], in_px[name])


def test_unknown_pixel_size_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rformer_monai.particles.measurement"):
        columns = measure_particles(disks_image(), pixel_size_nm=None)
    assert "ecd_px" in columns and "area_px2" in columns and "ecd_nm" not in columns
    assert any(record.levelno == logging.WARNING and "pixel" in record.message for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rformer_monai.particles.measurement"):
        measure_particles(disks_image(), pixel_size_nm=PIXEL_SIZE_NM)
    assert not caplog.records


def test_edge_flags() -> None:
    labels = np.zeros((60, 80), dtype=np.int32)
    for label, centre in enumerate([(30, 40), (3, 40), (30, 2), (30, 77), (54, 20), (40, 60)], start=1):
        labels[disk(centre, 5.5, shape=labels.shape)] = label
    # 1 inside, 2 cut by the top border, 3 left, 4 right, 5 bottom (rows 49..59), 6 rows 35..45
    assert measure_particles(labels, 1.0)["touches_edge"].tolist() == [False, True, True, True, True, False]
    # a data bar from row 46: particle 6 reaches row 45, the last sample row
    assert measure_particles(labels, 1.0, excluded_rows_from=46)["touches_edge"].tolist() == [
        False, True, True, True, True, True,
    ]  # fmt: skip
    assert measure_particles(labels, 1.0, excluded_rows_from=47)["touches_edge"][5] == np.False_


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.zeros((3, 4, 5), dtype=np.int32), "pixel_size_nm": 1.0}, "labels must be a 2-D"),
        ({"labels": np.zeros((4, 4)), "pixel_size_nm": 1.0}, "integer labels"),
        ({"labels": -np.ones((4, 4), dtype=np.int32), "pixel_size_nm": 1.0}, "non-negative"),
        ({"labels": np.zeros((4, 4), dtype=np.int32), "pixel_size_nm": 0.0}, "pixel_size_nm"),
        (
            {"labels": np.zeros((4, 4), dtype=np.int32), "pixel_size_nm": 1.0, "excluded_rows_from": 5},
            "excluded_rows_from",
        ),
    ],
)
def test_measure_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure_particles(**kwargs)


# ------------------------------------------------------------------------------------------
# separate_particles


def two_touching_disks(gap_line: bool = False) -> np.ndarray:
    mask = np.zeros((60, 90), dtype=bool)
    mask[disk((30, 30), 15.5)] = True
    mask[disk((30, 58), 15.5)] = True  # centres 28 apart: overlapping by 3 px
    if gap_line:
        mask[:, 44] = False
    return mask


def test_separates_two_touching_disks() -> None:
    mask = two_touching_disks()
    assert ndi.label(mask, FOUR_CONNECTED)[1] == 1
    labels = separate_particles(mask)
    assert labels.dtype == np.int32
    assert labels.max() == 2
    assert adjacent_labels(labels) == 0  # a one-pixel watershed line separates them
    assert ndi.label(labels > 0, FOUR_CONNECTED)[1] == 2
    columns = measure_particles(labels, pixel_size_nm=None)
    np.testing.assert_allclose(columns["centroid_x_px"], [30, 58], atol=ONE_PIXEL)
    np.testing.assert_allclose(columns["feret_max_px"], 31.0, atol=ONE_PIXEL)  # the uncut diameter
    np.testing.assert_allclose(columns["area_px2"], columns["area_px2"][::-1], atol=2)  # symmetric cut


def test_keeps_single_disks_and_existing_lines() -> None:
    labels = separate_particles(disks_image() > 0)
    assert labels.max() == len(DISK_RADII)
    assert separate_particles(two_touching_disks(gap_line=True)).max() == 2
    rod = np.zeros((40, 80), dtype=bool)
    rod[12:28, 10:70] = True  # a flat distance ridge: one particle
    assert separate_particles(rod).max() == 1
    elongated = np.zeros((80, 80), dtype=bool)
    elongated[ellipse(40, 40, 8.5, 30.5, rotation=0.3)] = True
    assert separate_particles(elongated).max() == 1


def test_removes_small_objects() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[2:4, 2:4] = True  # 4 px
    mask[disk((18, 18), 6.5)] = True
    labels = separate_particles(mask, min_size_px=5)
    assert labels.max() == 1 and labels[2, 2] == 0
    assert separate_particles(mask, min_size_px=4).max() == 2
    assert DEFAULT_MIN_SIZE_PX > 4


def test_separation_is_deterministic_and_handles_empty() -> None:
    mask = two_touching_disks()
    np.testing.assert_array_equal(separate_particles(mask), separate_particles(mask))
    empty = separate_particles(np.zeros((8, 9), dtype=np.uint8))
    assert empty.shape == (8, 9) and empty.max() == 0


def test_probability_weights_the_distance_map() -> None:
    mask = two_touching_disks()
    np.testing.assert_array_equal(
        separate_particles(mask, probability=np.ones(mask.shape)), separate_particles(mask)
    )
    # a rod is one particle, unless the network is unsure of its middle: that becomes a valley
    rod = np.zeros((40, 80), dtype=bool)
    rod[12:28, 20:60] = True
    probability = np.ones(rod.shape)
    probability[:, 39:42] = 0.3
    assert separate_particles(rod).max() == 1
    assert separate_particles(rod, probability=probability).max() == 2


def test_marker_rise_splits_a_low_particle_off_and_keeps_a_shallow_dip_whole() -> None:
    """A bar whose landscape (distance times probability, 11 px on its axis) has a shallow dip across a large
    particle (11 -> 9.9 -> 10.7 px: the lower peak rises 0.8 px, 8 % above the dip) and, past a deep neck
    (2.75 px), a faint particle (3.6 px: 0.9 px, 32 % above the neck). An absolute marker height splits
    both or neither; a relative rise splits the faint particle alone."""
    bar = np.zeros((31, 140), dtype=bool)
    bar[5:26, 5:135] = True
    probability = np.ones(bar.shape)
    probability[:, 45:49] = 0.9
    probability[:, 49:85] = 0.97
    probability[:, 85:89] = 0.25
    probability[:, 89:] = 0.33

    def split(**markers) -> np.ndarray:
        return separate_particles(bar, probability=probability, smoothing_sigma_px=0, **markers)

    def pieces(**markers) -> int:
        return int(split(**markers).max())

    assert pieces(marker_height_px=0.5, marker_rise=0.0) == 3
    assert pieces(marker_height_px=1.2, marker_rise=0.0) == 1
    labels = split(marker_height_px=0.1, marker_rise=0.2)
    assert labels.max() == 2
    assert labels[15, 30] == labels[15, 70] != labels[15, 110]
    assert pieces(marker_height_px=0.1, marker_rise=0.5) == 1  # the faint particle rises 32 %, not 50 %
    assert pieces(marker_height_px=1.2, marker_rise=0.2) == 1  # both conditions hold for a marker


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": np.zeros((2, 3, 4))}, "mask must be a 2-D"),
        ({"mask": np.zeros((5, 5)), "min_marker_distance_px": 0}, "min_marker_distance_px"),
        ({"mask": np.zeros((5, 5)), "min_marker_distance_px": 2.5}, "min_marker_distance_px"),
        ({"mask": np.zeros((5, 5)), "smoothing_sigma_px": -1.0}, "smoothing_sigma_px"),
        ({"mask": np.zeros((5, 5)), "min_size_px": 0}, "min_size_px"),
        ({"mask": np.zeros((5, 5)), "marker_height_px": 0.0}, "marker_height_px"),
        ({"mask": np.zeros((5, 5)), "marker_rise": -0.1}, "marker_rise"),
        ({"mask": np.ones((5, 5)), "probability": np.ones((4, 5))}, "probability must have"),
        ({"mask": np.ones((5, 5)), "probability": np.full((5, 5), 2.0)}, r"\[0, 1\]"),
    ],
)
def test_separate_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        separate_particles(**kwargs)


# ------------------------------------------------------------------------------------------
# statistics and tables


def test_size_statistics_on_known_values() -> None:
    statistics = size_statistics(np.arange(1.0, 11.0))
    assert statistics["count"] == 10
    assert statistics["mean"] == pytest.approx(5.5)
    assert statistics["median"] == statistics["d50"] == pytest.approx(5.5)
    assert statistics["d10"] == pytest.approx(1.9)  # linear interpolation between order statistics
    assert statistics["d90"] == pytest.approx(9.1)
    empty = size_statistics(np.array([]))
    assert empty["count"] == 0 and all(math.isnan(empty[name]) for name in ("mean", "median", "d10", "d50", "d90"))
    with pytest.raises(ValueError, match="ecd must hold finite"):
        size_statistics(np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="ecd must be a 1-D"):
        size_statistics(np.ones((2, 2)))


def test_summarize_excludes_edge_particles_by_default() -> None:
    columns = {
        "label": np.array([1, 2, 3, 4]),
        "area_nm2": np.array([10.0, 20.0, 30.0, 40.0]),
        "ecd_nm": np.array([1.0, 2.0, 3.0, 100.0]),
        "touches_edge": np.array([False, False, False, True]),
    }
    summary = summarize_particles(columns, image_area=200.0)
    assert summary["particle_count"] == 4
    assert summary["edge_particle_count"] == 1
    assert summary["measured_count"] == 3
    assert summary["ecd_median"] == pytest.approx(2.0)
    assert summary["ecd_mean"] == pytest.approx(2.0)
    assert summary["area_fraction"] == pytest.approx(0.5)  # every particle's area counts
    assert summary["unit"] == "nm"
    with_edge = summarize_particles(columns, image_area=200.0, include_edge=True)
    assert with_edge["measured_count"] == 4 and with_edge["ecd_median"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="image_area"):
        summarize_particles(columns, image_area=0.0)
    with pytest.raises(ValueError, match="ecd_nm"):
        summarize_particles({"label": np.array([1])}, image_area=1.0)


# ------------------------------------------------------------------------------------------
# integration with the synthetic generator (BAM-convention masks)


@pytest.mark.parametrize("seed", [0, 7])
def test_synthetic_mask_components_are_the_particles(seed: int) -> None:
    _, mask, truth = render_micrograph_instances((256, 320), rng=seed)
    true_count = np.unique(truth[truth > 0]).size
    labels = label_particles(mask)
    columns = measure_particles(labels, pixel_size_nm=7.5)
    assert len(columns["label"]) == true_count > 5
    assert columns["area_nm2"].sum() == pytest.approx(np.count_nonzero(mask) * 7.5**2)
    # the separation keeps the particles apart where the mask's lines already do
    separated = separate_particles(mask, min_size_px=1)
    assert abs(int(separated.max()) - true_count) <= max(2, true_count // 5)


# ------------------------------------------------------------------------------------------
# real data (CC BY-NC-ND, read in place; skipped where absent)


def test_real_ground_truth_particles_measure(bam_dataset_dir) -> None:
    folder = bam_dataset_dir / "Datasets" / "Electron Microscopy Image Masks" / "TiO2_Masks_Manual_4connected"
    path = sorted(folder.glob("*_m.tif"))[0]
    mask = tifffile.imread(path)[:712] > 0
    labels = label_particles(mask)
    columns = measure_particles(labels, pixel_size_nm=7.344, excluded_rows_from=mask.shape[0])
    assert len(columns["label"]) == labels.max() > 0
    assert 50.0 < np.median(columns["ecd_nm"]) < 500.0


# ---------------------------------------------------------------- deepening thin valleys
def _plateau_with_line(line_width: int, line_probability: float = 0.85) -> np.ndarray:
    """Two plateaus of probability 0.97 (rows 4..15) joined by a vertical line of lower probability."""
    probability = np.zeros((20, 30))
    probability[4:16, 4:26] = 0.97
    probability[4:16, 15 : 15 + line_width] = line_probability
    return probability


def test_deepen_valleys_lowers_a_thin_line_by_gain_times_its_depth():
    probability = _plateau_with_line(line_width=1)
    deepened = deepen_valleys(probability, gain=4.0)
    np.testing.assert_allclose(deepened[8:12, 15], 0.85 - 4.0 * (0.97 - 0.85))
    np.testing.assert_array_equal(deepened[8:12, 5:12], probability[8:12, 5:12])  # the plateau stays
    mask = deepened > 0.8
    assert ndi.label(mask, structure=FOUR_CONNECTED)[1] == 2  # the line cuts what 0.8 alone merges
    assert ndi.label(probability > 0.8, structure=FOUR_CONNECTED)[1] == 1


def test_deepen_valleys_leaves_broad_gaps_and_zero_gain_alone():
    probability = _plateau_with_line(line_width=3)
    np.testing.assert_array_equal(deepen_valleys(probability, gain=4.0)[6:14, 14:19], probability[6:14, 14:19])
    np.testing.assert_array_equal(deepen_valleys(_plateau_with_line(1), gain=0.0), _plateau_with_line(1))


def test_deepen_valleys_stays_a_probability_and_rejects_a_bad_gain():
    deepened = deepen_valleys(_plateau_with_line(1, line_probability=0.1), gain=100.0)
    assert deepened.min() >= 0.0 and deepened.max() <= 1.0
    for gain in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="valley gain must be a number >= 0"):
            deepen_valleys(_plateau_with_line(1), gain)


def test_particle_step_maps_cut_the_deepened_probability_along_the_separation():
    probability = _plateau_with_line(1)
    separation = np.zeros_like(probability)
    separation[:, 20] = 0.5
    deepened, cut = particle_step_maps(probability, None, valley_gain=4.0)
    np.testing.assert_array_equal(deepened, deepen_valleys(probability, 4.0))
    assert cut is None  # no separation output: the watershed runs on the mask's distance map alone
    deepened, cut = particle_step_maps(probability, separation, valley_gain=4.0)
    np.testing.assert_allclose(cut, deepen_valleys(probability, 4.0) * (1.0 - separation))


def test_separation_map_takes_one_channel_as_it_is_and_refuses_more():
    separation = np.random.default_rng(0).random((1, 6, 7))
    np.testing.assert_array_equal(separation_map(separation[0]), separation[0])
    np.testing.assert_array_equal(separation_map(separation), separation[0])
    with pytest.raises(ValueError, match="separation must be"):
        separation_map(np.zeros((2, 4, 4)))
