"""3-D particle instances from a particle probability volume: threshold, then a marker watershed on the
distance transform computed in nm (``sampling=spacing``), so that thick slices count as the length they are.
:mod:`~rformer_monai.volumes.clusters` applies it to each cluster of touching particles on its own."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from rformer_monai.particles import DEFAULT_PARTICLE_THRESHOLD

DEFAULT_MARKER_HEIGHT_VOXELS = 2.0
"""A particle's centre (a maximum of the distance to the background) must rise this many voxel sides (of the
finest axis) above the saddle to a neighbour to get its own particle; lower maxima are noise of the voxel grid
(an ellipsoid's ridge) or of the network's mask (its ragged outline) and merge with their neighbour. With 1,
the shipped network's masks of the synthetic stacks broke into about three times as many particles."""
DEFAULT_MIN_SIZE_VOXELS = 27
"""Particles smaller than a 3 x 3 x 3 cube are removed (noise of the probability)."""
PROBABILITY_LEVELS_UINT8 = 255
"""A uint8 probability volume (as :func:`~rformer_monai.volumes.segment.predict_stack_probability` writes it)
holds probability x 255."""
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def check_volume(volume: np.ndarray, name: str) -> np.ndarray:
    """``volume`` as an array, checked to be ``(z, y, x)``; the error names the argument."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{name} must be a (z, y, x) volume, got shape {volume.shape}.")
    return volume


def particle_mask(probability: np.ndarray, threshold: float = DEFAULT_PARTICLE_THRESHOLD) -> np.ndarray:
    """``probability > threshold`` for a float volume, or for a uint8 volume of probability x 255."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}.")
    probability = check_volume(probability, "probability")
    if probability.dtype == np.uint8:
        return probability > threshold * PROBABILITY_LEVELS_UINT8
    return probability > threshold


def check_particle_settings(
    spacing_nm: Sequence[float], marker_height_voxels: float, min_size_voxels: int
) -> np.ndarray:
    """Validate the 3-D particle step's settings; returns the spacing as a float64 array."""
    spacing = np.asarray(spacing_nm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing_nm must be three positive numbers (z, y, x), got {spacing_nm!r}.")
    if marker_height_voxels < 0:
        raise ValueError(f"marker_height_voxels must be >= 0, got {marker_height_voxels}.")
    if min_size_voxels < 1:
        raise ValueError(f"min_size_voxels must be >= 1, got {min_size_voxels}.")
    return spacing


def separate_mask_3d(
    mask: np.ndarray, spacing_nm: Sequence[float], marker_height_voxels: float, min_size_voxels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a ``(z, y, x)`` boolean particle mask into particles: a marker watershed on the distance transform.

    :mod:`~rformer_monai.volumes.clusters` calls it on one cluster (a 26-connected part of the mask) at a time,
    cropped to its bounding box plus one voxel: the cluster's distance transform and h-maxima are those of the
    whole mask, and the watershed's order among equal distances no longer depends on the other clusters.

    Args:
        mask: particle voxels.
        spacing_nm: ``(z, y, x)`` voxel spacing in nm.
        marker_height_voxels: see :data:`DEFAULT_MARKER_HEIGHT_VOXELS`.
        min_size_voxels: smaller particles are removed.

    Returns:
        ``(labels, first_marker_voxels)``: int32 labels numbered as their markers are (in raster order of each
        marker's first voxel), removed particles leaving gaps in the numbering; and per label ``n`` (at
        ``n - 1``) the flat index in ``mask`` of its marker's first voxel.
    """
    spacing = np.asarray(spacing_nm, dtype=np.float64)
    distance = ndi.distance_transform_edt(mask, sampling=spacing).astype(np.float32)
    height = np.float32(marker_height_voxels * spacing.min())
    maxima = h_maxima(distance, height) if height > 0 else (distance == ndi.maximum_filter(distance, size=3)) & mask
    markers, _ = ndi.label(maxima, structure=FULL_CONNECTIVITY)
    del maxima
    marker_voxels = np.flatnonzero(markers)
    _, first = np.unique(markers.ravel()[marker_voxels], return_index=True)
    first_marker_voxels = marker_voxels[first]
    labels = watershed(-distance, markers, mask=mask).astype(np.int32)
    del distance, markers
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size_voxels
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    return labels, first_marker_voxels
