"""The particle step slab by slab on disk equals the particle step in memory (one slab): labels, numbering and
the particle table, on synthetic stacks whose particles, touching pairs and noise clusters cross the slab seams."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel
import numpy as np
import pytest
from scipy import ndimage as ndi

from rformer_monai.inference.particle_blocks import RawPlane
from rformer_monai.volumes import (
    PARTICLE_COLUMNS_3D,
    SlabbedVolume,
    find_clusters,
    label_instances_3d,
    make_synthetic_volume,
    measure_particles_3d,
    particles_in_slabs,
    write_labels_nifti,
    write_labels_tiff,
)
from rformer_monai.volumes.clusters import slab_ranges
from rformer_monai.volumes.segment import SliceFile

SPACINGS = {"isotropic": (7.5, 7.5, 7.5), "thick_slices": (15.0, 7.5, 7.5)}
SHAPE_XY = (96, 96)
NOISE_SIGMA_VOXELS = 1.0
NOISE_OFFSET = 0.13  # smoothed uniform noise + this is above the threshold (0.7) in about 5 % of the voxels


def _probability(spacing, seed: int) -> np.ndarray:
    """uint8 probability x 255 of a synthetic stack: its particles at 0.9 plus smoothed noise, which adds clusters
    of every size, some of them merged with the particles."""
    depth = round(32 * 15.0 / spacing[0])
    volume = make_synthetic_volume((depth, *SHAPE_XY), spacing, num_separate=3, num_touching_pairs=2,
                                   diameter_range_nm=(90.0, 150.0), seed=seed)
    generator = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(generator.random(volume.labels.shape, dtype=np.float32), NOISE_SIGMA_VOXELS)
    probability = np.maximum(np.where(volume.labels > 0, 0.9, 0.0), noise + NOISE_OFFSET)
    return np.rint(np.clip(probability, 0, 1) * 255).astype(np.uint8)


def _on_disk(tmp_path: Path, probability: np.ndarray) -> SliceFile:
    stored = SliceFile(tmp_path / "probability.npy", probability.shape)
    for index, plane in enumerate(probability):
        stored[index] = plane
    stored.close()
    return stored


@pytest.mark.parametrize("slab_depth", [1, 5])
@pytest.mark.parametrize("spacing", SPACINGS.values(), ids=SPACINGS.keys())
@pytest.mark.parametrize("seed", [0, 1])
def test_slabs_equal_the_whole_stack(tmp_path: Path, spacing, seed, slab_depth) -> None:
    probability = _probability(spacing, seed)
    whole = label_instances_3d(probability, spacing)
    particles = particles_in_slabs(_on_disk(tmp_path, probability), tmp_path, spacing,
                                   slab_voxels=slab_depth * SHAPE_XY[0] * SHAPE_XY[1], progress=False)
    labels = np.concatenate(list(particles.label_slabs()))
    np.testing.assert_array_equal(labels, whole)  # the same numbering, not only the same particles
    expected = measure_particles_3d(whole, spacing)
    for column in PARTICLE_COLUMNS_3D:
        np.testing.assert_array_equal(particles.columns[column], expected[column], err_msg=column)
    # the test means something: particles cross seams, and clusters hold several particles
    boxes = ndi.find_objects(whole)
    assert sum(box[0].start // slab_depth != (box[0].stop - 1) // slab_depth for box in boxes) >= len(boxes) // 2
    clusters, _ = ndi.label(whole > 0, np.ones((3, 3, 3), bool))
    per_cluster = np.bincount(ndi.maximum(clusters, whole, np.arange(1, whole.max() + 1)).astype(int))
    assert per_cluster.max() >= 2


def test_clusters_join_across_seams_by_corners() -> None:
    mask = np.zeros((9, 10, 10), np.uint8)
    for index in range(9):
        mask[index, index, index] = 255  # a chain whose voxels touch only at corners
    mask[0:4, 8, 0] = mask[0:4, 8, 2] = 255  # a U whose two arms join only in the third slab
    mask[4, 8, 0:3] = 255
    clusters = find_clusters(lambda start, stop: mask[start:stop], mask.shape, slab_voxels=2 * 10 * 10)
    assert clusters.size.tolist() == [9, 11]
    assert clusters.low.tolist() == [[0, 0, 0], [0, 8, 0]] and clusters.high.tolist() == [[9, 9, 9], [5, 9, 3]]
    assert all(mask[tuple(seed)] for seed in clusters.seed)
    large = find_clusters(lambda start, stop: mask[start:stop], mask.shape, min_size_voxels=10, slab_voxels=100)
    assert large.size.tolist() == [11]


def test_empty_probability_gives_no_particles(tmp_path: Path) -> None:
    particles = particles_in_slabs(_on_disk(tmp_path, np.zeros((4, 8, 8), np.uint8)), tmp_path, (1, 1, 1),
                                   progress=False)
    assert particles.count == 0 and set(particles.columns) == set(PARTICLE_COLUMNS_3D)
    assert not np.concatenate(list(particles.label_slabs())).any()


def test_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slab_voxels"):
        slab_ranges((4, 8, 8), 0)
    with pytest.raises(ValueError, match="min_size_voxels"):
        particles_in_slabs(_on_disk(tmp_path, np.zeros((4, 8, 8), np.uint8)), tmp_path, (1, 1, 1), min_size_voxels=0)


def test_slice_file_reads_back_by_slab_region_and_numpy(tmp_path: Path) -> None:
    volume = np.random.default_rng(0).integers(0, 256, (6, 5, 7), dtype=np.uint8)
    stored = _on_disk(tmp_path, volume)
    np.testing.assert_array_equal(np.load(stored.path), volume)
    np.testing.assert_array_equal(stored.read_slab(2, 5), volume[2:5])
    np.testing.assert_array_equal(stored.read_region((slice(1, 3), slice(2, 4), slice(0, 7))), volume[1:3, 2:4])
    scratch = RawPlane(tmp_path / "scratch.raw", volume.shape, np.uint32)
    scratch.write_region((slice(0, 6), slice(0, 5), slice(0, 7)), volume, where=volume > 128)
    np.testing.assert_array_equal(scratch.read_slab(0, 6), np.where(volume > 128, volume, 0))


def test_label_files_written_by_slabs_equal_whole_volume_writes(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 70000, (7, 5, 6))
    spacing = (15.0, 7.5, 7.5)
    slabs = SlabbedVolume(labels.shape, labels.dtype, lambda: (labels[start:start + 3] for start in range(0, 7, 3)),
                          int(labels.max()))
    write_labels_nifti(tmp_path / "whole.nii.gz", labels, spacing)
    write_labels_nifti(tmp_path / "slabs.nii.gz", slabs, spacing)
    write_labels_tiff(tmp_path / "whole.tif", labels, spacing)
    write_labels_tiff(tmp_path / "slabs.tif", slabs, spacing)
    assert (tmp_path / "whole.tif").read_bytes() == (tmp_path / "slabs.tif").read_bytes()
    written = gzip.open(tmp_path / "slabs.nii.gz").read()
    assert written == gzip.open(tmp_path / "whole.nii.gz").read()
    # the same bytes as nibabel's own writer
    reference = nibabel.Nifti1Image(labels.astype(np.int32).transpose(2, 1, 0), np.diag([0.0075, 0.0075, 0.015, 1]))
    reference.header.set_xyzt_units(xyz="micron")
    reference.header.set_zooms((0.0075, 0.0075, 0.015))
    reference.header.set_intent("label")
    nibabel.save(reference, tmp_path / "reference.nii.gz")
    assert written == gzip.open(tmp_path / "reference.nii.gz").read()
