"""3-D measurements on true labels of synthetic stacks: exact counts, diameters within 2 %."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rformer_monai.volumes import make_synthetic_volume, measure_particles_3d, surface_area
from rformer_monai.volumes.measurement import PARTICLE_COLUMNS_3D

SPACINGS = {"isotropic": (7.5, 7.5, 7.5), "thick_slices": (15.0, 7.5, 7.5)}


@pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
@pytest.mark.parametrize("seed", [0, 1])
def test_separate_spheres_counts_exact_and_diameters_within_2_percent(spacing, seed) -> None:
    depth = round(32 * 15.0 / spacing[0])
    volume = make_synthetic_volume((depth, 96, 96), spacing, num_separate=4, num_touching_pairs=0,
                                   ellipsoid_fraction=0.0, diameter_range_nm=(90.0, 160.0), seed=seed)
    columns = measure_particles_3d(volume.labels, volume.spacing_nm)
    assert list(columns) == list(PARTICLE_COLUMNS_3D)
    assert len(columns["label"]) == len(volume.particles) == 4
    for particle in volume.particles:
        row = particle["label"] - 1
        radius = particle["semi_axes_nm"][0]
        assert columns["esd_nm"][row] == pytest.approx(particle["esd_nm"], rel=0.02)
        assert columns["surface_area_nm2"][row] == pytest.approx(4 * math.pi * radius**2, rel=0.04)
        assert columns["sphericity"][row] == pytest.approx(1.0, abs=0.05)
        assert columns["centroid_z_nm"][row] == pytest.approx(particle["centre_nm"][0], abs=spacing[0] / 2)
        assert columns["centroid_x_nm"][row] == pytest.approx(particle["centre_nm"][2], abs=spacing[2] / 2)
    assert not columns["touches_edge"].any()


def _ellipsoid_surface(semi_axes) -> float:
    """Knud Thomsen's approximation of an ellipsoid's surface (within 1.1 %)."""
    power = 1.6075
    a, b, c = (value**power for value in semi_axes)
    return 4 * math.pi * ((a * b + a * c + b * c) / 3) ** (1 / power)


def test_ellipsoids_keep_their_volume_surface_and_sphericity() -> None:
    volume = make_synthetic_volume((32, 96, 96), (7.5, 7.5, 7.5), num_separate=4, num_touching_pairs=0,
                                   ellipsoid_fraction=1.0, diameter_range_nm=(90.0, 160.0), seed=3)
    columns = measure_particles_3d(volume.labels, volume.spacing_nm)
    for particle in volume.particles:
        row = particle["label"] - 1
        surface = _ellipsoid_surface(particle["semi_axes_nm"])
        volume_nm3 = 4 / 3 * math.pi * math.prod(particle["semi_axes_nm"])
        assert columns["esd_nm"][row] == pytest.approx(particle["esd_nm"], rel=0.02)
        assert columns["surface_area_nm2"][row] == pytest.approx(surface, rel=0.04)
        expected_sphericity = math.pi ** (1 / 3) * (6 * volume_nm3) ** (2 / 3) / surface
        assert columns["sphericity"][row] == pytest.approx(expected_sphericity, rel=0.04)


def test_cube_volume_box_and_edge_flag() -> None:
    labels = np.zeros((6, 8, 8), dtype=np.int32)
    labels[0:4, 2:6, 2:6] = 3  # touches the z = 0 face
    columns = measure_particles_3d(labels, (2.0, 1.0, 1.0))
    assert columns["label"].tolist() == [3]
    assert columns["volume_nm3"][0] == 4 * 4 * 4 * 2.0
    assert [columns[f"bbox_{side}_z_nm"][0] for side in ("min", "max")] == [0.0, 8.0]
    assert columns["centroid_z_nm"][0] == 4.0
    assert columns["touches_edge"][0]


def test_empty_labels_give_empty_columns() -> None:
    columns = measure_particles_3d(np.zeros((3, 4, 4), dtype=np.uint16), (1, 1, 1))
    assert all(len(values) == 0 for values in columns.values())


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="labels must be a"):
        measure_particles_3d(np.zeros((4, 4), dtype=int), (1, 1, 1))
    with pytest.raises(ValueError, match="integers"):
        measure_particles_3d(np.zeros((2, 4, 4)), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing_nm"):
        measure_particles_3d(np.zeros((2, 4, 4), dtype=int), (1, 0, 1))


def test_tiny_particle_has_a_surface() -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    assert surface_area(mask, (1.0, 1.0, 1.0)) > 0
