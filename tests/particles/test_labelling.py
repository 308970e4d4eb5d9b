"""The shared particle convention: 4-connected labels and the equivalent circular diameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rformer_monai.particles.labelling import equivalent_circular_diameter, label_particles, remove_small_particles


def test_diagonal_neighbours_are_two_particles():
    mask = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]], dtype=np.uint8)
    labels = label_particles(mask)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert labels[0, 0] != labels[1, 1] and labels[1, 1] == labels[1, 2] == labels[2, 1]


def test_label_particles_rejects_a_channel_axis():
    with pytest.raises(ValueError, match=r"2-D \(H, W\)"):
        label_particles(np.zeros((1, 4, 4)))


def test_equivalent_circular_diameter_of_a_disk_area():
    assert equivalent_circular_diameter(math.pi * 5.0**2) == pytest.approx(10.0)
    np.testing.assert_allclose(equivalent_circular_diameter(np.array([0.0, math.pi])), [0.0, 2.0])


def test_remove_small_particles_keeps_those_of_the_smallest_size_and_labels_them_again():
    labels = np.zeros((6, 8), dtype=np.int32)
    labels[0, 0] = 7  # a 1 px sliver
    labels[0:3, 2:5] = 3  # 9 px
    labels[4:6, 2:7] = 5  # 10 px
    kept = remove_small_particles(labels, 10)
    assert kept.dtype == np.int32 and kept.max() == 1 and (kept > 0).sum() == 10 and (kept[4:6, 2:7] == 1).all()
    both = remove_small_particles(labels, 9)
    assert both[1, 3] == 1 and both[5, 6] == 2 and both[0, 0] == 0  # labelled again in raster order
    assert np.array_equal(remove_small_particles(labels, 1), labels)  # nothing smaller: the labels as they are
