"""The 3-D particle step on a perfect probability: counts exact, touching pairs split, sizes kept."""

from __future__ import annotations

import numpy as np
import pytest

from rformer_monai.metrics.instances import match_instances
from rformer_monai.volumes import label_instances_3d, make_synthetic_volume, measure_particles_3d

SPACINGS = {"isotropic": (7.5, 7.5, 7.5), "thick_slices": (15.0, 7.5, 7.5)}


@pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perfect_probability_gives_exact_counts_and_splits_pairs(spacing, seed) -> None:
    depth = round(40 * 15.0 / spacing[0])
    volume = make_synthetic_volume((depth, 128, 128), spacing, seed=seed)
    labels = label_instances_3d((volume.labels > 0).astype(np.float32), spacing)
    assert labels.max() == len(volume.particles)
    matches = match_instances(labels, volume.labels)
    assert matches.tp == len(volume.particles)  # every touching pair split, nothing merged
    predicted = measure_particles_3d(labels, spacing)
    truth = measure_particles_3d(volume.labels, spacing)
    separate = [p["label"] for p in volume.particles if p["pair"] is None]
    order = np.argsort(predicted["centroid_x_nm"]), np.argsort(truth["centroid_x_nm"])
    by_truth = dict(zip(truth["label"][order[1]], predicted["esd_nm"][order[0]]))
    for label in separate:
        assert by_truth[label] == pytest.approx(truth["esd_nm"][label - 1], rel=0.02)


def test_uint8_probability_is_thresholded_at_the_same_level() -> None:
    spacing = (15.0, 7.5, 7.5)
    volume = make_synthetic_volume((32, 96, 96), spacing, num_separate=3, num_touching_pairs=1,
                                   diameter_range_nm=(90.0, 150.0), seed=4)
    probability = np.where(volume.labels > 0, 0.9, 0.1).astype(np.float32)
    as_uint8 = np.rint(probability * 255).astype(np.uint8)
    np.testing.assert_array_equal(label_instances_3d(probability, spacing), label_instances_3d(as_uint8, spacing))


def test_small_noise_is_removed_and_empty_gives_zeros() -> None:
    probability = np.zeros((8, 16, 16), dtype=np.float32)
    probability[2, 2, 2] = 1.0
    assert label_instances_3d(probability, (1, 1, 1)).max() == 0
    assert label_instances_3d(np.zeros((4, 4, 4), np.float32), (1, 1, 1)).dtype == np.int32


def test_bad_settings() -> None:
    probability = np.zeros((4, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="threshold"):
        label_instances_3d(probability, (1, 1, 1), threshold=1.5)
    with pytest.raises(ValueError, match="spacing_nm"):
        label_instances_3d(probability, (1, 1))
    with pytest.raises(ValueError, match="min_size_voxels"):
        label_instances_3d(probability, (1, 1, 1), min_size_voxels=0)
    with pytest.raises(ValueError, match="probability must be"):
        label_instances_3d(np.zeros((4, 4), np.float32), (1, 1, 1))
