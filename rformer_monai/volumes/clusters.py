"""3-D particles cluster by cluster, for stacks in memory and, with bounded memory, for stacks of any size on disk.

A *cluster* is a 26-connected part of the particle mask. The particle step splits each cluster on its own
(:func:`~rformer_monai.volumes.instances.separate_mask_3d`: distance transform, h-maxima, watershed): the
distance transform and the h-maxima of a cluster depend only on it and on the background within one voxel of its
bounding box, and the watershed floods it from its own markers. So the step is done in two passes over the
probability:

1. **Clusters, slab by slab** (:func:`find_clusters`). z-slabs of about :data:`DEFAULT_SLAB_VOXELS` are
   thresholded and labelled into 26-connected pieces; pieces that touch across the plane between two slabs are
   joined (union-find over the label pairs of neighbouring voxels of the two planes). Each cluster keeps its
   voxel count, bounding box and one of its voxels.
2. **Particles, cluster by cluster.** Each cluster of at least ``min_size_voxels`` is read back cropped to its
   box plus one voxel and split; its particles are measured there
   (:func:`~rformer_monai.volumes.measurement.measure_particles_3d` with the crop's origin) and written into the
   label volume.

Particles are numbered in raster order of their marker's first voxel. :func:`label_instances_3d` (a stack in
memory, one slab) and :func:`particles_in_slabs` (a stack on disk, many slabs) run the same steps, so their labels
and particle tables are equal (``tests/volumes/test_volume_clusters.py``).

Why not one watershed over the whole stack: skimage's watershed pushes all markers with the same age, so which
of two equal distances is flooded first depends on the markers of every other cluster in the array; on plateaus
of the distance (thick slices give many) a cluster's split then changes with the rest of the stack. Splitting
each cluster on its own gives one answer, whatever the slab size or the other particles.

Memory of :func:`particles_in_slabs`: a slab (about 10 bytes per voxel of it) in the first pass, the largest
cluster's box (about :data:`PARTICLE_STEP_BYTES_PER_VOXEL`) in the second. A cluster is as large as the particles
that touch one another: separate or touching particles give small clusters, but a sintered network spanning
the stack is one cluster and is held whole (logged). Disk: the probability (1 byte per voxel) and the labels
(4 bytes per voxel, written only where there are particles) in the work folder.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from rformer_monai.inference.particle_blocks import RawPlane
from rformer_monai.particles import DEFAULT_PARTICLE_THRESHOLD
from rformer_monai.volumes.instances import (
    DEFAULT_MARKER_HEIGHT_VOXELS,
    DEFAULT_MIN_SIZE_VOXELS,
    FULL_CONNECTIVITY,
    check_particle_settings,
    check_volume,
    particle_mask,
    separate_mask_3d,
)
from rformer_monai.volumes.measurement import PARTICLE_COLUMNS_3D, measure_particles_3d
from rformer_monai.volumes.outputs import SlabbedVolume

logger = logging.getLogger(__name__)

DEFAULT_SLAB_VOXELS = 2**24
"""Voxels per slab read at once (at least one z-slice): 4 slices of 2048 x 2048, 16 of 1024 x 1024."""
CLUSTER_MARGIN_VOXELS = 1
"""A cluster is cropped with this many voxels around its bounding box: the background voxels nearest to it (for
its distance transform) all lie within one voxel of the box."""
LARGE_CLUSTER_VOXELS = 2**26
"""A cluster whose cropped box holds more voxels than this is logged: the particle step holds it whole."""
PARTICLE_STEP_BYTES_PER_VOXEL = 80
"""Peak memory of the distance transform, h-maxima and watershed per voxel of the box they run on (measured on
whole stacks, docs/volumes.md)."""
LABEL_DTYPE = np.uint32
NEIGHBOUR_OFFSETS = tuple(product((-1, 0, 1), repeat=2))
"""(dy, dx) from a voxel of one plane to its 26-connected neighbours in the next plane."""


class VolumeRegions(Protocol):
    """A ``(z, y, x)`` volume read by slab and region and written by region: a
    :class:`~rformer_monai.inference.particle_blocks.RawPlane` on disk, or :class:`ArrayRegions` in memory."""

    shape: tuple[int, ...]

    def read_slab(self, start: int, stop: int) -> np.ndarray: ...

    def read_region(self, region: tuple[slice, ...]) -> np.ndarray: ...

    def write_region(self, region: tuple[slice, ...], values: np.ndarray, where: np.ndarray | None = None) -> None: ...


class ArrayRegions:
    """An array in memory with the slab and region access of a
    :class:`~rformer_monai.inference.particle_blocks.RawPlane`."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape

    def read_slab(self, start: int, stop: int) -> np.ndarray:
        """``array[start:stop]`` (a view)."""
        return self.array[start:stop]

    def read_region(self, region: tuple[slice, ...]) -> np.ndarray:
        """``array[region]`` (a view)."""
        return self.array[region]

    def write_region(self, region: tuple[slice, ...], values: np.ndarray, where: np.ndarray | None = None) -> None:
        """Set ``array[region]`` to ``values`` (only where ``where`` is true, if given)."""
        np.copyto(self.array[region], values, casting="unsafe", where=True if where is None else where)


def slab_ranges(shape: Sequence[int], slab_voxels: int = DEFAULT_SLAB_VOXELS) -> list[slice]:
    """z-ranges of at most ``slab_voxels`` voxels (at least one slice each) tiling a ``(z, y, x)`` stack."""
    if slab_voxels < 1:
        raise ValueError(f"slab_voxels must be >= 1, got {slab_voxels}.")
    depth = max(1, slab_voxels // max(1, shape[1] * shape[2]))
    return [slice(start, min(start + depth, shape[0])) for start in range(0, shape[0], depth)]


@dataclass
class Clusters:
    """The 26-connected parts of a stack's particle mask.

    Attributes:
        low: ``(N, 3)`` first voxel of each cluster's bounding box (z, y, x).
        high: ``(N, 3)`` last voxel + 1.
        size: ``(N,)`` voxels.
        seed: ``(N, 3)`` one voxel of each cluster.
    """

    low: np.ndarray
    high: np.ndarray
    size: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return len(self.size)


def _touching_pairs(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """``(K, 2)`` distinct pairs of nonzero labels of two consecutive planes whose voxels are 26-neighbours."""
    height, width = upper.shape
    pairs = []
    for dy, dx in NEIGHBOUR_OFFSETS:
        above = upper[max(0, -dy):height - max(0, dy), max(0, -dx):width - max(0, dx)]
        below = lower[max(0, dy):height - max(0, -dy), max(0, dx):width - max(0, -dx)]
        both = (above > 0) & (below > 0)
        pairs.append(np.stack([above[both], below[both]], axis=1))
    return np.unique(np.concatenate(pairs), axis=0)


def find_clusters(
    read_slab: Callable[[int, int], np.ndarray],
    shape: Sequence[int],
    threshold: float = DEFAULT_PARTICLE_THRESHOLD,
    min_size_voxels: int = 1,
    slab_voxels: int = DEFAULT_SLAB_VOXELS,
) -> Clusters:
    """Find the clusters of at least ``min_size_voxels`` voxels of a probability stack read slab by slab.

    Args:
        read_slab: ``read_slab(start, stop)`` gives the ``(stop - start, y, x)`` probability (float in [0, 1] or
            uint8 probability x 255) of slices ``start:stop``.
        shape: the stack's ``(z, y, x)`` shape.
        threshold: probability above which a voxel is particle.
        min_size_voxels: smaller clusters are left out.
        slab_voxels: voxels read at once.

    Returns:
        The clusters, in the order of their first piece (slab by slab, raster order within a slab).
    """
    shape = tuple(int(side) for side in shape)
    plane_voxels = shape[1] * shape[2]
    lows, highs, sizes, seeds, pairs = [], [], [], [], []
    count = 0
    previous_plane = None  # piece numbers (from 1, 0 none) of the previous slab's last slice
    for slab in slab_ranges(shape, slab_voxels):
        labels, found = ndi.label(particle_mask(read_slab(slab.start, slab.stop), threshold), FULL_CONNECTIVITY)
        flat = labels.ravel()
        voxels = np.flatnonzero(flat)
        owners = flat[voxels]
        size = np.bincount(owners, minlength=found + 1)[1:]
        seed = np.zeros(found, np.int64)
        seed[owners - 1] = voxels + slab.start * plane_voxels
        del voxels, owners
        boxes = ndi.find_objects(labels)
        low = np.array([[piece.start for piece in box] for box in boxes], np.int64).reshape(found, 3)
        high = np.array([[piece.stop for piece in box] for box in boxes], np.int64).reshape(found, 3)
        low[:, 0] += slab.start
        high[:, 0] += slab.start
        on_seam = np.zeros(found + 1, bool)  # pieces that may join pieces of the slab before or after
        on_seam[labels[0]] = True
        on_seam[labels[-1]] = True
        keep = (size >= min_size_voxels) | on_seam[1:]
        numbers = np.zeros(found + 1, np.int64)
        numbers[1:][keep] = count + 1 + np.arange(np.count_nonzero(keep))
        if previous_plane is not None:
            pairs.append(_touching_pairs(previous_plane, numbers[labels[0]]))
        previous_plane = numbers[labels[-1]]
        lows.append(low[keep])
        highs.append(high[keep])
        sizes.append(size[keep])
        seeds.append(seed[keep])
        count += int(np.count_nonzero(keep))
        del labels, flat
    if count == 0:
        return Clusters(np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64), np.zeros(0, np.int64),
                        np.zeros((0, 3), np.int64))
    joined = np.concatenate(pairs) - 1 if pairs else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(joined), np.int8), (joined[:, 0], joined[:, 1])), shape=(count, count))
    found, cluster_of = connected_components(graph, directed=False)
    low = np.full((found, 3), np.iinfo(np.int64).max)
    high = np.zeros((found, 3), np.int64)
    np.minimum.at(low, cluster_of, np.concatenate(lows))
    np.maximum.at(high, cluster_of, np.concatenate(highs))
    size = np.bincount(cluster_of, weights=np.concatenate(sizes), minlength=found).astype(np.int64)
    _, first_piece = np.unique(cluster_of, return_index=True)
    seed = np.stack(np.unravel_index(np.concatenate(seeds)[first_piece], shape), axis=1)
    keep = size >= min_size_voxels
    return Clusters(low[keep], high[keep], size[keep], seed[keep])


def _cluster_region(clusters: Clusters, index: int, shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, int(low) - CLUSTER_MARGIN_VOXELS), min(side, int(high) + CLUSTER_MARGIN_VOXELS))
        for low, high, side in zip(clusters.low[index], clusters.high[index], shape)
    )


def _split_clusters(
    probability: VolumeRegions,
    labels: VolumeRegions,
    spacing: np.ndarray,
    threshold: float,
    marker_height_voxels: float,
    min_size_voxels: int,
    slab_voxels: int,
    measure: bool,
    progress: bool,
) -> tuple[dict[str, np.ndarray] | None, np.ndarray]:
    """Split every cluster of ``probability``, writing provisional labels 1..N into ``labels``.

    Returns:
        The particle table in final order (labels 1..N; None unless ``measure``) and ``final_labels``, which maps
        the provisional labels to the final ones (raster order of each particle's marker).
    """
    shape = tuple(probability.shape)
    clusters = find_clusters(probability.read_slab, shape, threshold, min_size_voxels, slab_voxels)
    first_voxels, rows = [], []  # per cluster: its particles' marker voxels; (particles, columns) float64 table
    count = 0
    for index in tqdm(range(len(clusters)), desc="3-D particles", disable=not progress):
        region = _cluster_region(clusters, index, shape)
        origin = np.array([piece.start for piece in region])
        box_voxels = math.prod(piece.stop - piece.start for piece in region)
        if box_voxels > LARGE_CLUSTER_VOXELS:
            logger.warning(
                "a cluster of touching particles fills a box of %s voxels (%d of them particle): the particle step "
                "holds about %.1f GB for it", tuple(piece.stop - piece.start for piece in region),
                clusters.size[index], box_voxels * PARTICLE_STEP_BYTES_PER_VOXEL / 1e9,
            )
        components, _ = ndi.label(particle_mask(probability.read_region(region), threshold), FULL_CONNECTIVITY)
        mask = components == components[tuple(clusters.seed[index] - origin)]
        del components
        local, first_marker_voxels = separate_mask_3d(mask, spacing, marker_height_voxels, min_size_voxels)
        kept = np.flatnonzero(np.bincount(local.ravel())[1:]) + 1
        if not len(kept):
            continue
        provisional = np.zeros(int(kept[-1]) + 1, LABEL_DTYPE)
        provisional[kept] = count + 1 + np.arange(len(kept))
        labels.write_region(region, provisional[local], where=local > 0)
        voxel = np.stack(np.unravel_index(first_marker_voxels[kept - 1], local.shape), axis=1) + origin
        first_voxels.append(np.ravel_multi_index(tuple(voxel.T), shape))
        if measure:  # rows in label order, as ``kept``
            columns = measure_particles_3d(local, spacing, origin, shape)
            rows.append(np.stack([columns[name] for name in PARTICLE_COLUMNS_3D], axis=1).astype(np.float64))
        count += len(kept)
    order = np.argsort(np.concatenate(first_voxels) if first_voxels else np.zeros(0, np.int64), kind="stable")
    final_labels = np.zeros(count + 1, LABEL_DTYPE)
    final_labels[order + 1] = np.arange(1, count + 1)
    logger.debug("%d particles in %d clusters of a %s stack", count, len(clusters), shape)
    if not measure:
        return None, final_labels
    empty = measure_particles_3d(np.zeros((1, 1, 1), np.int32), spacing)  # the columns' types
    table = np.concatenate(rows)[order] if rows else np.zeros((0, len(PARTICLE_COLUMNS_3D)))
    columns = {name: table[:, column].astype(empty[name].dtype) for column, name in enumerate(PARTICLE_COLUMNS_3D)}
    columns["label"] = np.arange(1, count + 1, dtype=empty["label"].dtype)
    return columns, final_labels


def label_instances_3d(
    probability: np.ndarray,
    spacing_nm: Sequence[float],
    threshold: float = DEFAULT_PARTICLE_THRESHOLD,
    marker_height_voxels: float = DEFAULT_MARKER_HEIGHT_VOXELS,
    min_size_voxels: int = DEFAULT_MIN_SIZE_VOXELS,
) -> np.ndarray:
    """Split the particle mask of a probability volume held in memory into 3-D particles, cluster by cluster
    (:func:`particles_in_slabs` does stacks on disk with bounded memory, with the same result).

    Args:
        probability: ``(z, y, x)`` particle probability, float in [0, 1] or uint8 (probability x 255).
        spacing_nm: ``(z, y, x)`` voxel spacing in nm.
        threshold: probability above which a voxel is particle.
        marker_height_voxels: see :data:`~rformer_monai.volumes.instances.DEFAULT_MARKER_HEIGHT_VOXELS`.
        min_size_voxels: smaller particles are removed.

    Returns:
        ``(z, y, x)`` int32 labels 1..N, 0 background.
    """
    spacing = check_particle_settings(spacing_nm, marker_height_voxels, min_size_voxels)
    probability = check_volume(probability, "probability")
    labels = np.zeros(probability.shape, LABEL_DTYPE)
    _, final_labels = _split_clusters(
        ArrayRegions(probability), ArrayRegions(labels), spacing, threshold, marker_height_voxels, min_size_voxels,
        max(1, probability.size), measure=False, progress=False,
    )
    np.take(final_labels, labels, out=labels)
    return labels.view(np.int32)  # at most one particle per voxel: far below 2^31


@dataclass
class StackParticles:
    """The particles of a stack: their table and their label volume on disk.

    Attributes:
        columns: the columns of :data:`~rformer_monai.volumes.measurement.PARTICLE_COLUMNS_3D`, labels 1..N.
        labels: the label volume on disk, in provisional numbers (``final_labels`` maps them to 1..N).
        final_labels: ``final_labels[provisional]`` is the particle's label (0 stays 0).
        slab_voxels: voxels per slab read by :meth:`label_slabs`.
    """

    columns: dict[str, np.ndarray]
    labels: RawPlane
    final_labels: np.ndarray
    slab_voxels: int = DEFAULT_SLAB_VOXELS

    @property
    def count(self) -> int:
        """The number of particles."""
        return len(self.columns["label"])

    def label_slabs(self) -> Iterator[np.ndarray]:
        """The ``(z, y, x)`` labels 1..N, one z-slab at a time."""
        for slab in slab_ranges(self.labels.shape, self.slab_voxels):
            yield self.final_labels[self.labels.read_slab(slab.start, slab.stop)]

    def label_volume(self) -> SlabbedVolume:
        """The labels as a :class:`~rformer_monai.volumes.outputs.SlabbedVolume` for the writers."""
        return SlabbedVolume(self.labels.shape, self.final_labels.dtype, self.label_slabs, self.count)


def particles_in_slabs(
    probability: RawPlane,
    work_dir: str | os.PathLike,
    spacing_nm: Sequence[float],
    threshold: float = DEFAULT_PARTICLE_THRESHOLD,
    marker_height_voxels: float = DEFAULT_MARKER_HEIGHT_VOXELS,
    min_size_voxels: int = DEFAULT_MIN_SIZE_VOXELS,
    slab_voxels: int = DEFAULT_SLAB_VOXELS,
    progress: bool = True,
) -> StackParticles:
    """Find, separate and measure the 3-D particles of a probability stack on disk with bounded memory.

    Args:
        probability: ``(z, y, x)`` probability on disk (uint8 probability x 255, as
            :class:`~rformer_monai.volumes.segment.SliceFile` holds it, or float in [0, 1]).
        work_dir: where the label volume's scratch file goes.
        spacing_nm: ``(z, y, x)`` voxel spacing in nm.
        threshold, marker_height_voxels, min_size_voxels: as for :func:`label_instances_3d`, with the same result.
        slab_voxels: voxels per slab read at once.
        progress: show a progress bar over the clusters.

    Returns:
        The particle table and the label volume (a scratch file in ``work_dir``).
    """
    spacing = check_particle_settings(spacing_nm, marker_height_voxels, min_size_voxels)
    labels = RawPlane(Path(work_dir) / "labels.raw", probability.shape, LABEL_DTYPE)
    columns, final_labels = _split_clusters(
        probability, labels, spacing, threshold, marker_height_voxels, min_size_voxels, slab_voxels, True, progress
    )
    return StackParticles(columns, labels, final_labels, slab_voxels)


def slabbed_file(volume: RawPlane, slab_voxels: int = DEFAULT_SLAB_VOXELS) -> SlabbedVolume:
    """A ``(z, y, x)`` volume on disk as a :class:`~rformer_monai.volumes.outputs.SlabbedVolume` read slab by slab."""
    return SlabbedVolume(
        volume.shape, volume.dtype,
        lambda: (volume.read_slab(slab.start, slab.stop) for slab in slab_ranges(volume.shape, slab_voxels)),
    )
