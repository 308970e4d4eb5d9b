"""The BAM particle convention that transforms, analysis and metrics share: a particle is a 4-connected
component of the mask, and its size is the equivalent circular diameter of its area."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "FOUR_CONNECTED",
    "equivalent_circular_diameter",
    "label_particles",
    "remove_small_particles",
    "separated_foreground",
]

FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)
"""Structuring element of 4-connectivity (edge neighbours only): the BAM ground truth's particles."""


def label_particles(mask: np.ndarray) -> np.ndarray:
    """Label the 4-connected components of a binary mask: the BAM particles.

    Args:
        mask: (H, W) mask, non-zero is particle.

    Returns:
        (H, W) int32 labels 1..N, 0 background.

    Raises:
        ValueError: when ``mask`` is not 2-D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(
            f"mask must be a 2-D (H, W) array, got shape {tuple(mask.shape)}; squeeze a channel axis first."
        )
    labels, _ = ndi.label(mask > 0, structure=FOUR_CONNECTED)
    return labels.astype(np.int32, copy=False)


def remove_small_particles(labels: np.ndarray, min_size_px: int) -> np.ndarray:
    """The particles of ``labels`` of at least ``min_size_px`` pixels, labelled again 1..N (4-connected, raster
    order of their first pixel); ``labels`` itself (as int32) when none is smaller.

    Args:
        labels: (H, W) integer instance labels, 0 background, whose particles are 4-connected.
        min_size_px: smallest area kept, in pixels.
    """
    labels = np.asarray(labels).astype(np.int32, copy=False)
    areas = np.bincount(labels.ravel(), minlength=int(labels.max(initial=0)) + 1)
    too_small = (areas > 0) & (areas < min_size_px)
    too_small[0] = False
    if not too_small.any():
        return labels
    return label_particles(np.where(too_small[labels], 0, labels))


def separated_foreground(labels: np.ndarray) -> np.ndarray:
    """The BAM mask of an instance label image: its particles without the pixels whose right or lower
    4-neighbour is another particle, so that touching particles are split by one-pixel background lines and
    every 4-connected component of the mask lies within one particle.

    Args:
        labels: (H, W) integer instance labels, 0 background.

    Returns:
        (H, W) bool mask.
    """
    labels = np.asarray(labels)
    cut = np.zeros(labels.shape, dtype=bool)
    right = labels[:, 1:]
    cut[:, :-1] = (labels[:, :-1] != right) & (right > 0)
    below = labels[1:, :]
    cut[:-1, :] |= (labels[:-1, :] != below) & (below > 0)
    return (labels > 0) & ~cut


def equivalent_circular_diameter(area: np.ndarray | float) -> np.ndarray | float:
    """Diameter of the disk with the given area, ``sqrt(4 area / pi)``, in the area's length unit."""
    return np.sqrt(4.0 * np.asarray(area, dtype=np.float64) / np.pi)
