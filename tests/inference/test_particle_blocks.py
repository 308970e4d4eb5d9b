"""The particle step in blocks equals the whole-image particle step: labels, numbering, the particle table and the
ImageJ outlines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from rformer_monai.inference.particle_blocks import LABEL_DTYPE, RawPlane, stitched_particles
from rformer_monai.particles import particle_step_maps, separate_particles, separation_map
from rformer_monai.particles.imagej import PixelSize, particle_table
from rformer_monai.reports.roi import particle_outlines

PARTICLE_THRESHOLD = 0.7


def touching_particles_probability(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A float32 particle probability: clusters of touching disks of 4 to 14 px radius (some large aggregates
    crossing block seams), blurred so that necks between them are valleys."""
    rng = np.random.default_rng(seed)
    height, width = shape
    rows, columns = np.mgrid[:height, :width]
    mask = np.zeros(shape, dtype=bool)
    for _ in range(height * width // 900):
        centre_row, centre_column = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(4, 14)
        mask |= (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2
    probability = ndi.gaussian_filter(mask.astype(np.float64), 1.5)
    return np.clip(probability + rng.normal(0, 0.02, shape), 0, 1).astype(np.float32)


def _planes(tmp_path, probability, separation, height):
    width = probability.shape[1]
    probability_plane = RawPlane(tmp_path / "probability.raw", (height, width), np.float32)
    probability_plane.write(slice(0, probability.shape[0]), slice(None), probability)
    separation_plane = None
    if separation is not None:
        separation_plane = RawPlane(tmp_path / "separation.raw", (1, height, width), np.float32)
        separation_plane.write(slice(0, probability.shape[0]), slice(None), separation[None])
    return probability_plane, separation_plane, RawPlane(tmp_path / "labels.raw", (height, width), LABEL_DTYPE)


@pytest.mark.parametrize("valley_gain", [0.0, 4.0])
@pytest.mark.parametrize("with_separation", [False, True])
@pytest.mark.parametrize("bar_rows", [0, 7])
def test_blocks_equal_the_whole_image(tmp_path, valley_gain, with_separation, bar_rows):
    sample_shape = (300, 420)
    height = sample_shape[0] + bar_rows
    probability = touching_particles_probability(sample_shape)
    separation = None
    if with_separation:
        separation = np.clip(ndi.gaussian_filter(probability, 3) - probability + 0.3, 0, 1).astype(np.float32)
    # the whole-image analysis, as the bundle's handler runs it on a full-size map whose data bar rows are 0
    full_probability = np.zeros((height, sample_shape[1]), np.float32)
    full_probability[: sample_shape[0]] = probability
    full_separation = None
    if separation is not None:
        full_separation = np.zeros((1, height, sample_shape[1]), np.float32)
        full_separation[0, : sample_shape[0]] = separation
    step, cut = particle_step_maps(
        full_probability, None if full_separation is None else separation_map(full_separation), valley_gain
    )
    rows = sample_shape[0]
    expected = separate_particles(step[:rows] > PARTICLE_THRESHOLD, probability=None if cut is None else cut[:rows])
    grey = np.random.default_rng(1).integers(0, 256, (height, sample_shape[1]), dtype=np.uint8)
    pixel_size = PixelSize(2.5, "given")
    expected_table = particle_table(expected, pixel_size, image=grey[:rows])

    planes = _planes(tmp_path, probability, separation, height)
    outlines = {}
    table = stitched_particles(
        *planes,
        sample_rows=rows,
        pixel_size=pixel_size,
        threshold=PARTICLE_THRESHOLD,
        valley_gain=valley_gain,
        separation_map=separation_map,
        block_size=64,
        halo=16,
        image=lambda rows, columns: grey[rows, columns],
        outlines=outlines,
    )
    labels = planes[2].read(slice(None), slice(None))

    assert expected.max() > 50  # many particles, many of them cut by the 64 px seams
    np.testing.assert_array_equal(labels[:rows], expected)
    assert not labels[rows:].any()
    assert list(table) == list(expected_table)
    for name in table:
        np.testing.assert_array_equal(table[name], expected_table[name], err_msg=name)
    expected_outlines = particle_outlines(expected)
    assert sorted(outlines) == sorted(expected_outlines)
    for label, points in expected_outlines.items():
        np.testing.assert_array_equal(outlines[label], points, err_msg=str(label))


def test_an_aggregate_larger_than_the_halo_is_one_particle(tmp_path):
    """A bar across the whole image: blocks grow their halo until it is whole, measured once."""
    probability = np.zeros((120, 400), np.float32)
    probability[50:70, 5:395] = 0.95
    planes = _planes(tmp_path, probability, None, 120)
    table = stitched_particles(
        *planes, sample_rows=120, pixel_size=PixelSize(None, "unknown"), threshold=0.7, block_size=32, halo=8
    )
    labels = planes[2].read(slice(None), slice(None))
    assert labels.max() == 1 and len(table["label"]) == 1
    assert table["Area_px2"][0] == 20 * 390


def test_bad_block_size_is_named(tmp_path):
    planes = _planes(tmp_path, np.zeros((8, 8), np.float32), None, 8)
    with pytest.raises(ValueError, match="block_size"):
        stitched_particles(*planes, sample_rows=8, pixel_size=PixelSize(None, "unknown"), threshold=0.7, block_size=0)
