"""ImageJ-style particle table on drawn shapes of known size: disks, ellipses, rotated rectangles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon

from rformer_monai.particles.imagej import PARTICLE_TABLE_COLUMNS, PixelSize, particle_table, table_rows

ONE_PIXEL = 1.0
PIXEL_SIZE = PixelSize(2.0, "given")


def _rectangle(length: float, width: float, angle_deg: float, shape=(200, 200)) -> np.ndarray:
    """A length x width rectangle centred in the image, its long side at angle_deg (counter-clockwise, y up)."""
    angle = math.radians(angle_deg)
    along = np.array([-math.sin(angle), math.cos(angle)])  # (row, column) of the long side, y up
    across = np.array([math.cos(angle), math.sin(angle)])
    centre = np.array(shape) / 2
    corners = [centre + sa * length / 2 * along + sb * width / 2 * across for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    corners = np.array(corners)
    labels = np.zeros(shape, dtype=np.int32)
    rows, columns = polygon(corners[:, 0], corners[:, 1], shape)
    labels[rows, columns] = 1
    return labels


def test_columns_in_order_with_nm_and_px_side_by_side() -> None:
    labels = np.zeros((50, 50), dtype=np.int32)
    labels[10:20, 10:30] = 3
    table = particle_table(labels, PIXEL_SIZE, image=np.full((50, 50), 7.0))
    assert tuple(table) == PARTICLE_TABLE_COLUMNS
    assert PARTICLE_TABLE_COLUMNS[:5] == ("label", "Area_nm2", "Area_px2", "Perim_nm", "Perim_px")
    assert table["label"].tolist() == [3]
    assert table["Area_px2"][0] == 200 and table["Area_nm2"][0] == 800
    assert (table["BX_px"][0], table["BY_px"][0], table["Width_px"][0], table["Height_px"][0]) == (10, 10, 20, 10)
    assert (table["X_px"][0], table["Y_px"][0]) == (20.0, 15.0)  # ImageJ: pixel centres at +0.5
    assert table["X_nm"][0] == 40.0 and table["Width_nm"][0] == 40.0
    assert table["Mean"][0] == 7.0
    assert table["pixel_size_nm"][0] == 2.0 and table["pixel_size_source"][0] == "given"


@pytest.mark.parametrize("radius", [8, 20, 40])
def test_disk(radius: int) -> None:
    labels = np.zeros((200, 200), dtype=np.int32)
    labels[disk((100, 100), radius)] = 1
    table = particle_table(labels, PIXEL_SIZE)
    assert abs(table["Feret_px"][0] - 2 * radius) <= ONE_PIXEL
    assert abs(table["MinFeret_px"][0] - 2 * radius) <= ONE_PIXEL
    assert abs(table["ECD_px"][0] - 2 * radius) <= ONE_PIXEL
    assert abs(table["Perim_px"][0] - 2 * math.pi * radius) < 2 * ONE_PIXEL
    assert table["Major_px"][0] == pytest.approx(table["Minor_px"][0], rel=0.01)
    assert table["AR"][0] == pytest.approx(1.0, abs=0.01) and table["Round"][0] == pytest.approx(1.0, abs=0.01)
    assert table["Circ"][0] == pytest.approx(1.0, abs=0.06) and table["Solidity"][0] == 1.0
    assert table["Feret_nm"][0] == pytest.approx(2.0 * table["Feret_px"][0], abs=0.01)


@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0, 120.0, 160.0])
def test_ellipse_axes_and_angle(angle: float) -> None:
    labels = np.zeros((200, 200), dtype=np.int32)
    labels[ellipse(100, 100, 15, 30, rotation=math.radians(angle))] = 1
    table = particle_table(labels, PIXEL_SIZE)
    assert abs(table["Major_px"][0] - 60) < ONE_PIXEL and abs(table["Minor_px"][0] - 30) < ONE_PIXEL
    assert table["Angle"][0] == pytest.approx(angle, abs=1.0)
    assert table["AR"][0] == pytest.approx(2.0, abs=0.05)
    assert table["Round"][0] == pytest.approx(0.5, abs=0.02)
    assert abs(table["Feret_px"][0] - 60) < ONE_PIXEL and abs(table["MinFeret_px"][0] - 30) < 1.5 * ONE_PIXEL
    assert table["Major_nm"][0] == pytest.approx(2.0 * table["Major_px"][0], abs=0.01)


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 100.0])
def test_rotated_rectangle(angle: float) -> None:
    length, width = 80.0, 30.0
    table = particle_table(_rectangle(length, width, angle), PIXEL_SIZE)
    diagonal = math.hypot(length, width)
    assert abs(table["Feret_px"][0] - diagonal) < 1.5 * ONE_PIXEL
    assert abs(table["MinFeret_px"][0] - width) < 1.5 * ONE_PIXEL
    assert table["Angle"][0] == pytest.approx(angle % 180, abs=1.0)  # the ellipse lies along the long side
    diagonal_angles = [(angle + sign * math.degrees(math.atan2(width, length))) % 180 for sign in (-1, 1)]
    assert min(abs(table["FeretAngle"][0] - a) for a in diagonal_angles) < 3.5
    assert table["AR"][0] == pytest.approx(length / width, rel=0.05)
    assert table["Solidity"][0] == pytest.approx(1.0, abs=0.01)
    rad = math.radians(angle)
    assert abs(table["Width_px"][0] - (length * abs(math.cos(rad)) + width * abs(math.sin(rad)))) < 2 * ONE_PIXEL


def test_uncalibrated_nm_columns_are_empty_cells() -> None:
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[5:10, 5:10] = 1
    table = particle_table(labels, PixelSize(None))
    assert math.isnan(table["ECD_nm"][0]) and table["ECD_px"][0] > 0
    row = table_rows(table)[0]
    assert row["ECD_nm"] == "" and row["pixel_size_nm"] == "" and row["pixel_size_source"] == "unknown"
    assert type(row["label"]) is int and row["touches_edge"] is False


def test_rounding_and_empty_table() -> None:
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[disk((20, 20), 9)] = 1
    table = particle_table(labels, PixelSize(7.344, "zeiss"))
    assert table["Area_nm2"][0] == round(table["Area_nm2"][0], 2)
    assert len(str(table["Circ"][0]).split(".")[1]) <= 4
    empty = particle_table(np.zeros((10, 10), dtype=np.int32), PIXEL_SIZE)
    assert tuple(empty) == PARTICLE_TABLE_COLUMNS and all(len(values) == 0 for values in empty.values())
