"""Tests for the particle analysis figures and files (rformer_monai.reports.figures / outputs)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import tifffile
from matplotlib.image import imread
from skimage.draw import disk

from rformer_monai.data.synthetic import (
    SYNTHETIC_PIXEL_SIZE_NM,
    render_micrograph_instances,
)
from rformer_monai.particles.imagej import PARTICLE_TABLE_COLUMNS
from rformer_monai.particles.measurement import measure_particles
from rformer_monai.reports import (
    ECD_VALUES_KEY,
    POOLED_ROW_NAME,
    SUMMARY_COLUMNS,
    analyse_mask,
    plot_overlay,
    plot_size_distribution,
    scale_bar_length,
    write_folder_summary,
    write_particle_csv,
)

IMAGE_SIZE = (200, 256)
DATA_BAR_ROWS = 24
PARTICLE_COLUMNS_NM = [
    "label", "area_nm2", "ecd_nm", "perimeter_nm", "feret_max_nm", "feret_min_nm", "aspect_ratio",
    "circularity", "solidity", "centroid_x_nm", "centroid_y_nm", "touches_edge",
]  # fmt: skip
"""measure_particles' columns (the library table); the CSV of analyse_mask holds PARTICLE_TABLE_COLUMNS."""


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def no_temporary_files(folder: Path) -> bool:
    return not [path for path in folder.iterdir() if path.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def synthetic() -> tuple[np.ndarray, np.ndarray]:
    image, mask, _ = render_micrograph_instances(IMAGE_SIZE, rng=1, data_bar_rows=DATA_BAR_ROWS)
    return image, mask


# ------------------------------------------------------------------------------------------
# plots


@pytest.mark.parametrize(
    ("width", "expected"),
    [(1000.0, 200.0), (10.0, 2.0), (1024 * 7.344, 2000.0), (512 * 7.5, 1000.0), (3.0, 0.5)],
)
def test_scale_bar_length_is_round_and_near_a_fifth(width: float, expected: float) -> None:
    assert scale_bar_length(width) == pytest.approx(expected)


def test_scale_bar_length_rejects_bad_width() -> None:
    with pytest.raises(ValueError, match="width must be a positive"):
        scale_bar_length(0.0)


@pytest.mark.parametrize("pixel_size_nm", [7.5, None])
def test_plot_overlay_writes_full_size_png(tmp_path: Path, pixel_size_nm: float | None) -> None:
    image = np.random.default_rng(0).integers(0, 255, size=(60, 90), dtype=np.uint8)
    labels = np.zeros(image.shape, dtype=np.int32)
    labels[disk((30, 30), 10.5)] = 1
    labels[disk((30, 60), 10.5)] = 2
    figures_before = plt.get_fignums()
    path = plot_overlay(tmp_path / "overlay.png", image, labels, pixel_size_nm)
    assert path.is_file()
    assert imread(path).shape[:2] == image.shape
    assert plt.get_fignums() == figures_before  # no pyplot state
    assert no_temporary_files(tmp_path)
    plot_overlay(tmp_path / "mask_only.png", None, labels, pixel_size_nm)  # no micrograph
    with pytest.raises(ValueError, match="image must be"):
        plot_overlay(tmp_path / "bad.png", image[:10], labels, pixel_size_nm)


@pytest.mark.parametrize("ecd", [np.linspace(20.0, 300.0, 200), np.array([]), np.array([42.0])])
def test_plot_size_distribution(tmp_path: Path, ecd: np.ndarray) -> None:
    path = plot_size_distribution(tmp_path / "psd.png", ecd, "nm", title="run")
    assert path.is_file() and imread(path).ndim == 3
    assert no_temporary_files(tmp_path)


# ------------------------------------------------------------------------------------------
# per-image outputs


def test_write_particle_csv(tmp_path: Path) -> None:
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[disk((20, 20), 8.5)] = 3
    columns = measure_particles(labels, 2.0)
    path = write_particle_csv(tmp_path / "sub" / "p.csv", columns)
    header, rows = read_csv(path)
    assert header == PARTICLE_COLUMNS_NM
    assert len(rows) == 1 and rows[0]["label"] == "3" and rows[0]["touches_edge"] == "False"
    assert float(rows[0]["ecd_nm"]) == pytest.approx(columns["ecd_nm"][0])


def test_analyse_mask_writes_files_and_returns_summary(tmp_path: Path, synthetic) -> None:
    image, mask = synthetic
    row = analyse_mask(mask, image, SYNTHETIC_PIXEL_SIZE_NM, tmp_path, "sample", data_bar_rows=DATA_BAR_ROWS)

    labels = tifffile.imread(tmp_path / "sample_labels.tif")
    assert labels.shape == IMAGE_SIZE and labels.dtype == np.uint16
    assert labels[-DATA_BAR_ROWS:].max() == 0
    assert labels.max() == row["particle_count"] > 0

    header, rows = read_csv(tmp_path / "sample_particles.csv")
    assert header == list(PARTICLE_TABLE_COLUMNS)
    assert {r["pixel_size_source"] for r in rows} == {"given"}
    assert len(rows) == row["particle_count"]
    assert sum(row_["touches_edge"] == "True" for row_ in rows) == row["edge_particle_count"]
    for suffix in ("_overlay.png", "_psd.png", "_rois.zip", "_image.json"):
        assert (tmp_path / f"sample{suffix}").is_file()
    assert imread(tmp_path / "sample_overlay.png").shape[:2] == (IMAGE_SIZE[0] - DATA_BAR_ROWS, IMAGE_SIZE[1])
    assert no_temporary_files(tmp_path)

    assert set(SUMMARY_COLUMNS) <= set(row) and row["stem"] == "sample" and row["unit"] == "nm"
    assert row["measured_count"] == row["particle_count"] - row["edge_particle_count"] == len(row[ECD_VALUES_KEY])
    measured = np.array([float(r["ECD_nm"]) for r in rows if r["touches_edge"] == "False"])
    assert row["ecd_median"] == pytest.approx(np.median(measured), abs=0.01)
    sample_area = (IMAGE_SIZE[0] - DATA_BAR_ROWS) * IMAGE_SIZE[1] * SYNTHETIC_PIXEL_SIZE_NM**2
    assert row["area_fraction"] == pytest.approx(sum(float(r["Area_nm2"]) for r in rows) / sample_area, abs=1e-4)


def test_analyse_mask_without_pixel_size_warns(tmp_path: Path, synthetic, caplog) -> None:
    _, mask = synthetic
    with caplog.at_level(logging.WARNING):
        row = analyse_mask(mask, None, None, tmp_path, "nopix", data_bar_rows=DATA_BAR_ROWS, min_size_px=5)
    assert row["unit"] == "px"
    assert any("nopix" in record.message and "--pixel-size-nm" in record.message for record in caplog.records)
    header, rows = read_csv(tmp_path / "nopix_particles.csv")
    assert header == list(PARTICLE_TABLE_COLUMNS)
    assert rows[0]["ECD_nm"] == "" and float(rows[0]["ECD_px"]) > 0 and rows[0]["pixel_size_source"] == "unknown"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data_bar_rows": -1}, "data_bar_rows"),
        ({"data_bar_rows": IMAGE_SIZE[0]}, "data_bar_rows"),
        ({"stem": "a/b"}, "stem"),
        ({"image": np.zeros((5, 5))}, "image must be"),
        ({"mask": np.zeros((1, *IMAGE_SIZE))}, "mask must be a 2-D"),
    ],
)
def test_analyse_mask_rejects_bad_input(tmp_path: Path, synthetic, kwargs: dict, message: str) -> None:
    image, mask = synthetic
    arguments = {"mask": mask, "image": image, "pixel_size_nm": 7.5, "output_dir": tmp_path, "stem": "x"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        analyse_mask(**arguments)


# ------------------------------------------------------------------------------------------
# run summary


def test_folder_summary_pools_images_per_unit(tmp_path: Path, synthetic) -> None:
    image, mask = synthetic
    rows = [
        analyse_mask(mask, image, 7.5, tmp_path, "first", data_bar_rows=DATA_BAR_ROWS),
        analyse_mask(mask[:, ::-1], image[:, ::-1], 7.5, tmp_path, "second", data_bar_rows=DATA_BAR_ROWS),
        analyse_mask(mask, image, None, tmp_path, "third", data_bar_rows=DATA_BAR_ROWS),
    ]
    summary = write_folder_summary(tmp_path)

    header, written = read_csv(tmp_path / "summary.csv")
    assert header == list(SUMMARY_COLUMNS)
    assert [row["stem"] for row in written] == ["first", "second", "third", POOLED_ROW_NAME, POOLED_ROW_NAME]
    assert [row["unit"] for row in written] == ["nm", "nm", "px", "nm", "px"]
    pooled = summary.pooled[0]
    assert pooled["particle_count"] == rows[0]["particle_count"] + rows[1]["particle_count"]
    assert pooled["measured_count"] == rows[0]["measured_count"] + rows[1]["measured_count"]
    all_ecd = np.concatenate([row[ECD_VALUES_KEY] for row in rows[:2]])
    assert pooled["ecd_median"] == pytest.approx(np.median(all_ecd), abs=0.01)
    assert float(written[3]["ecd_d90"]) == pytest.approx(np.percentile(all_ecd, 90), abs=0.01)
    assert float(written[3]["ecd_std"]) == pytest.approx(np.std(all_ecd, ddof=1), abs=0.01)
    assert float(written[3]["ecd_span"]) == pytest.approx(
        (np.percentile(all_ecd, 90) - np.percentile(all_ecd, 10)) / np.median(all_ecd), abs=1e-3
    )
    assert written[0]["flagged_count"] == "0" and written[0]["warning"] == ""  # no trust warning recorded
    assert written[4]["particle_count"] == str(rows[2]["particle_count"])
    assert (tmp_path / "size_distribution.png").is_file() and (tmp_path / "size_distribution.svg").is_file()
    assert (tmp_path / "size_distribution_px.png").is_file()
    assert no_temporary_files(tmp_path)


def test_folder_summary_counts_flagged_images_and_skips_incomplete_images(tmp_path: Path, synthetic) -> None:
    image, mask = synthetic
    analyse_mask(mask, image, 7.5, tmp_path, "first", data_bar_rows=DATA_BAR_ROWS, extra={"warning": "low contrast"})
    (tmp_path / "second_image.json").write_text('{"stem": "second"}')  # no particle table: incomplete
    summary = write_folder_summary(tmp_path)
    assert [row["stem"] for row in summary.images] == ["first"] and summary.images[0]["flagged_count"] == 1
    assert summary.images[0]["warning"] == "low contrast"
    assert write_folder_summary(tmp_path / "empty").images == []


def test_overlay_outlines_are_saturated_colours_that_differ_between_neighbours():
    """Every outline is drawn opaque in a saturated colour (none pale or grey, which vanish on bright particles),
    and neighbouring particles (here separated by one-pixel lines) get different colours."""
    from rformer_monai.reports.figures import adjacent_label_pairs, colour_labels, overlay_figure

    labels = np.zeros((40, 200), np.int32)
    for index in range(20):
        labels[10:30, 10 * index + 1 : 10 * index + 10] = index + 1
    pairs = adjacent_label_pairs(labels)
    assert pairs.tolist() == [[index, index + 1] for index in range(1, 20)]
    colours = colour_labels(labels)
    assert all(colours[first] != colours[second] for first, second in pairs)
    overlay = np.asarray(overlay_figure(None, labels, pixel_size_nm=None).axes[0].images[1].get_array())
    drawn = overlay[..., 3] > 0
    colours = overlay[drawn][:, :3]
    assert drawn.any() and np.all(overlay[drawn][:, 3] == 1.0)
    assert np.all(colours.min(axis=1) < 0.5)  # not pale
    assert np.all(colours.max(axis=1) - colours.min(axis=1) >= 0.2)  # not grey
    first, second = overlay[10, 1, :3], overlay[10, 11, :3]  # left edges of particles 1 and 2
    assert not np.allclose(first, second)


def test_scale_bar_sits_in_the_corner_with_fewest_particles():
    from rformer_monai.reports.figures import _scale_bar_corner

    particles = np.ones((100, 100), dtype=bool)
    particles[:30, :50] = False  # only the top-left corner is free
    left, top = _scale_bar_corner(particles, box_width=40, box_height=20, margin=3)
    assert (left, top) == (3, 3)
