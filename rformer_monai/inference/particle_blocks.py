"""The particle step of a micrograph of any size, in overlapping blocks, with particles stitched across seams.

The particle step (:func:`~rformer_monai.particles.particle_step_maps`, a threshold and
:func:`~rformer_monai.particles.separate_particles`) is local: a particle's pixels and its watershed lines depend
on the probability of its *cluster*: the particles whose smoothed distance maps touch (mask pixels closer than
two Gaussian radii, :data:`CLUSTER_GAP_PX`), as the h-maxima that seed the watershed see them through the gaps
between them. So the image is cut into *cores* that tile it, each analysed with a *halo* of context around it,
and a block keeps the particles whose first pixel (raster order) lies in its core: every particle is kept by
exactly one block, whole, and measured once. A block whose kept particles' clusters come within
:data:`PARTICLE_CONTEXT_PX` of a side of the block that is not the image's border is analysed again with twice
the halo, up to ``max_halo`` (beyond it a dense cluster is analysed with that much context, logged); a kept
particle that would be cut by the block's side always makes the halo grow, up to the whole image. Labels are numbered in raster order of their first pixel over the whole image, as
``separate_particles`` numbers them, and measured with their offset in the image, so on an image that fits in
memory the labels and the particle table equal the whole-image analysis (tested in
``tests/inference/test_particle_blocks.py``).

Why not label blocks and merge labels that touch across seams: merging the pieces of a particle is easy, but
its watershed lines near a seam would still be drawn without the context beyond it (markers are h-maxima of a
smoothed distance map). Keeping whole particles from a halo gives the whole-image answer at the price of
analysing the halo twice.

The planes (probability, separation outputs, labels) live in raw scratch files read and written by region
(:class:`RawPlane`), so memory is bounded by the block size.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from rformer_monai.particles.imagej import PixelSize, particle_table
from rformer_monai.particles.separation import (
    DEFAULT_VALLEY_GAIN,
    VALLEY_FOOTPRINT_PX,
    particle_step_maps,
    separate_particles,
)
from rformer_monai.reports.roi import particle_outlines

logger = logging.getLogger(__name__)

DEFAULT_PARTICLE_BLOCK_SIZE = 2048
"""Target side of a particle block's core in pixels: the separation needs about 15 float64 planes of core + halo."""
DEFAULT_PARTICLE_HALO_PX = 128
"""Context around a particle block's core at first; doubled for a block whose particles need more."""
DEFAULT_MAX_PARTICLE_HALO_PX = 512
"""Largest halo grown for clusters of particles; particles themselves are never cut (their halo grows on)."""
CLUSTER_GAP_PX = 4
"""Reach of the separation's Gaussian (4 sigma at sigma 1 px): mask pixels within twice this are one cluster."""
PARTICLE_CONTEXT_PX = 8
"""Pixels between a kept particle's cluster (dilated by :data:`CLUSTER_GAP_PX`) and a block side inside the
image below which the block is analysed again with a larger halo (the Gaussian's reflection at the side reaches
4 px)."""
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
VALLEY_CONTEXT_PX = VALLEY_FOOTPRINT_PX - 1
"""Pixels of probability beyond a block that its grey closing (dilation then erosion) reads."""
LABEL_DTYPE = np.uint32


class RawPlane:
    """A (C, H, W) or (H, W) array in a raw scratch file (or a (Z, Y, X) stack), read and written by region.

    Every region access maps the file, copies one region and unmaps it, so the pages touched do not accumulate in
    resident memory; :meth:`read_slab` reads whole slabs along the first axis with file reads, without a mapping. A
    new file reads as zeros.

    Args:
        path: the scratch file (created, or truncated to the array's size).
        shape: (H, W), (C, H, W) or (Z, Y, X).
        dtype: the element type.
        header: bytes written before the array (a ``.npy`` header, say); the array starts after them.
    """

    def __init__(
        self, path: str | os.PathLike, shape: Sequence[int], dtype: np.dtype | type, header: bytes = b""
    ) -> None:
        self.path = Path(path)
        self.shape = tuple(int(side) for side in shape)
        self.dtype = np.dtype(dtype)
        self.offset = len(header)
        with open(self.path, "wb") as handle:
            handle.write(header)
            handle.truncate(max(1, self.offset + math.prod(self.shape) * self.dtype.itemsize))

    def _mapping(self, mode: str) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode=mode, shape=self.shape, offset=self.offset)

    def read_region(self, region: tuple[slice, ...]) -> np.ndarray:
        """A copy of ``array[region]``."""
        mapping = self._mapping("r")
        try:
            return np.array(mapping[region])
        finally:
            del mapping

    def write_region(self, region: tuple[slice, ...], values: np.ndarray, where: np.ndarray | None = None) -> None:
        """Set ``array[region]`` to ``values`` (only where ``where`` is true, if given)."""
        mapping = self._mapping("r+")
        try:
            np.copyto(mapping[region], values, casting="unsafe", where=True if where is None else where)
            mapping.flush()
        finally:
            del mapping

    def read(self, rows: slice, columns: slice) -> np.ndarray:
        """A copy of rows x columns (of every channel)."""
        return self.read_region((..., rows, columns))

    def write(self, rows: slice, columns: slice, values: np.ndarray) -> None:
        """Set rows x columns to ``values``."""
        self.write_region((..., rows, columns), values)

    def read_slab(self, start: int, stop: int) -> np.ndarray:
        """A copy of ``array[start:stop]`` (along the first axis) read from the file, without a mapping."""
        slab = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        buffer = memoryview(slab.reshape(-1).view(np.uint8))
        with open(self.path, "rb", buffering=0) as handle:
            handle.seek(self.offset + start * math.prod(self.shape[1:]) * self.dtype.itemsize)
            done = 0
            while done < buffer.nbytes:
                count = handle.readinto(buffer[done:])
                if not count:
                    raise OSError(f"{self.path} ends before slab {start}:{stop} of {self.shape}.")
                done += count
        return slab

    def remove(self) -> None:
        """Delete the scratch file."""
        self.path.unlink(missing_ok=True)


def _axis_cores(extent: int, block_size: int) -> list[slice]:
    """Equal cores of about ``block_size`` pixels tiling ``[0, extent)``."""
    count = max(1, math.ceil(extent / block_size))
    core = math.ceil(extent / count)
    return [slice(start, min(start + core, extent)) for start in range(0, extent, core)]


def _expand(core: slice, halo: int, extent: int) -> slice:
    return slice(max(0, core.start - halo), min(extent, core.stop + halo))


@dataclass
class _BlockParticles:
    """The particles a block keeps: its region, its labels there (others 0), and per kept label its first pixel."""

    region: tuple[slice, slice]
    labels: np.ndarray
    local_labels: np.ndarray
    first_pixels: np.ndarray  # (N, 2) image coordinates (row, column)


def _kept_particles(labels: np.ndarray, region: tuple[slice, slice], core: tuple[slice, slice]) -> _BlockParticles:
    """The particles of ``labels`` (the block's region) whose first pixel lies in ``core``."""
    values, first = np.unique(labels.ravel(), return_index=True)
    first_rows, first_columns = np.divmod(first, labels.shape[1])
    first_rows, first_columns = first_rows + region[0].start, first_columns + region[1].start
    inside = (
        (values > 0)
        & (first_rows >= core[0].start)
        & (first_rows < core[0].stop)
        & (first_columns >= core[1].start)
        & (first_columns < core[1].stop)
    )
    kept = values[inside]
    lookup = np.zeros(int(values.max(initial=0)) + 1, dtype=bool)
    lookup[kept] = True
    return _BlockParticles(
        region=region,
        labels=np.where(lookup[labels], labels, 0),
        local_labels=kept,
        first_pixels=np.stack([first_rows[inside], first_columns[inside]], axis=1),
    )


def _clusters_of(particles: _BlockParticles, mask: np.ndarray) -> np.ndarray:
    """The clusters (mask pixels within :data:`CLUSTER_GAP_PX` of each other, dilated by it) of the kept particles."""
    side = 2 * CLUSTER_GAP_PX + 1
    clusters, _ = ndi.label(ndi.binary_dilation(mask, structure=np.ones((side, side), dtype=bool)), EIGHT_CONNECTED)
    kept = np.unique(clusters[particles.labels > 0])
    return np.isin(clusters, kept[kept > 0])


def _near_inner_side(
    foreground: np.ndarray, region: tuple[slice, slice], sample_shape: Sequence[int], context: int
) -> bool:
    """Whether ``foreground`` has a pixel within ``context`` of a side of ``region`` inside the sample."""
    if not foreground.any():
        return False
    rows, columns = region
    near = []
    if rows.start > 0:
        near.append(foreground[:context].any())
    if rows.stop < sample_shape[0]:
        near.append(foreground[-context:].any())
    if columns.start > 0:
        near.append(foreground[:, :context].any())
    if columns.stop < sample_shape[1]:
        near.append(foreground[:, -context:].any())
    return any(near)


def _border_flags(
    labels: np.ndarray, region: tuple[slice, slice], sample_shape: Sequence[int], count_labels: np.ndarray
) -> np.ndarray:
    """Whether each of ``count_labels`` has a pixel on the sample's border (row 0, the last sample row, the first
    or last column), as :func:`~rformer_monai.particles.measure_particles` flags it on the whole sample."""
    on_border = []
    rows, columns = region
    if rows.start == 0:
        on_border.append(labels[0])
    if rows.stop == sample_shape[0]:
        on_border.append(labels[-1])
    if columns.start == 0:
        on_border.append(labels[:, 0])
    if columns.stop == sample_shape[1]:
        on_border.append(labels[:, -1])
    values = np.unique(np.concatenate(on_border)) if on_border else np.zeros(0, dtype=labels.dtype)
    return np.isin(count_labels, values)


def _concatenate(tables: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    columns = {name: np.concatenate([table[name] for table in tables]) for name in tables[0]}
    order = np.argsort(columns["label"], kind="stable")
    return {name: values[order] for name, values in columns.items()}


def stitched_particles(
    probability: RawPlane,
    separation: RawPlane | None,
    labels: RawPlane,
    sample_rows: int,
    pixel_size: PixelSize,
    threshold: float,
    valley_gain: float = DEFAULT_VALLEY_GAIN,
    separation_map: Callable[[np.ndarray], np.ndarray] | None = None,
    block_size: int = DEFAULT_PARTICLE_BLOCK_SIZE,
    halo: int = DEFAULT_PARTICLE_HALO_PX,
    max_halo: int = DEFAULT_MAX_PARTICLE_HALO_PX,
    image: Callable[[slice, slice], np.ndarray] | None = None,
    outlines: dict[int, np.ndarray] | None = None,
    **separation_kwargs: Any,
) -> dict[str, np.ndarray]:
    """Separate, label and measure the particles of a whole image block by block (see the module docstring).

    Args:
        probability: (H, W) float32 particle probability of the whole image, 0 in the data bar's rows.
        separation: (C, H, W) float32 separation outputs of a network that has them, or None.
        labels: (H, W) ``uint32`` plane (zeros) that receives the particle labels; the data bar stays 0.
        sample_rows: rows above the data bar, where particles are analysed.
        pixel_size: the pixel size (``nm=None``: sizes in pixels) and its source.
        threshold: particle threshold of the (valley-deepened) probability.
        valley_gain: see :func:`~rformer_monai.particles.deepen_valleys`.
        separation_map: turns separation outputs (C, h, w) into the (h, w) map the watershed cuts along.
        block_size: target side of a block's core in pixels.
        halo: first context around a core, pixels (doubled where a block needs more).
        max_halo: largest halo grown for clusters of particles (particles that would be cut grow it further).
        image: reads rows x columns of the micrograph as stored, for the table's ``Mean``; None leaves it NaN.
        outlines: where given, receives every particle's outline (label -> ImageJ polygon,
            :func:`~rformer_monai.reports.particle_outlines`) in the image's coordinates.
        **separation_kwargs: those of :func:`~rformer_monai.particles.separate_particles`.

    Returns:
        The particle table of :func:`~rformer_monai.particles.particle_table` (ImageJ's measurements) over the
        whole sample, ordered by label.

    Raises:
        ValueError: a non-positive ``block_size`` or negative ``halo``; a separation without a ``separation_map``.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size <= 0:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
    if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
        raise ValueError(f"halo must be an integer >= 0, got {halo!r}.")
    if separation is not None and separation_map is None:
        raise ValueError("separation outputs need a separation_map to turn them into the watershed's map.")
    height, width = probability.shape
    sample_shape = (int(sample_rows), width)
    margin = VALLEY_CONTEXT_PX if valley_gain > 0 else 0

    def analyse(core: tuple[slice, slice], block_halo: int) -> _BlockParticles:
        while True:
            region = tuple(_expand(side, block_halo, extent) for side, extent in zip(core, sample_shape))
            read = tuple(_expand(side, margin, extent) for side, extent in zip(region, (height, width)))
            inner = tuple(slice(side.start - outer.start, side.stop - outer.start) for side, outer in zip(region, read))
            maps = particle_step_maps(
                probability.read(*read),
                None if separation is None else separation_map(separation.read(*read)),
                valley_gain,
            )
            block_probability, cut = (None if plane is None else plane[inner] for plane in maps)
            block_labels = separate_particles(block_probability > threshold, probability=cut, **separation_kwargs)
            particles = _kept_particles(block_labels, region, core)
            whole_image = all(side.start == 0 and side.stop == extent for side, extent in zip(region, sample_shape))
            if whole_image:
                return particles
            if _near_inner_side(particles.labels > 0, region, sample_shape, PARTICLE_CONTEXT_PX):
                reason = "particles reach its side"
            elif block_halo < max_halo and _near_inner_side(
                _clusters_of(particles, block_probability > threshold), region, sample_shape, PARTICLE_CONTEXT_PX
            ):
                reason = "clusters of particles reach its side"
            else:
                if block_halo >= max_halo:
                    logger.info(
                        "particle block %s: a cluster wider than the %d px halo is analysed with that much context",
                        core,
                        block_halo,
                    )
                return particles
            block_halo *= 2
            logger.info("particle block %s: %s, analysed again with a %d px halo", core, reason, block_halo)

    tables = []
    next_label = 1
    row_cores, column_cores = _axis_cores(sample_shape[0], block_size), _axis_cores(sample_shape[1], block_size)
    for row_core in row_cores:
        found = [analyse((row_core, column_core), int(halo)) for column_core in column_cores]
        firsts = np.concatenate([particles.first_pixels for particles in found])
        order = np.lexsort((firsts[:, 1], firsts[:, 0]))
        global_labels = np.empty(len(firsts), dtype=np.int64)
        global_labels[order] = np.arange(next_label, next_label + len(firsts))
        next_label += len(firsts)
        start = 0
        for particles in found:
            count = len(particles.local_labels)
            lookup = np.zeros(int(particles.labels.max(initial=0)) + 1, dtype=LABEL_DTYPE)
            lookup[particles.local_labels] = global_labels[start : start + count]
            start += count
            block_labels = lookup[particles.labels]
            current = labels.read(*particles.region)
            labels.write(*particles.region, np.where(block_labels > 0, block_labels, current))
            offset = (particles.region[0].start, particles.region[1].start)
            block_image = None if image is None else image(*particles.region)
            table = particle_table(block_labels, pixel_size, image=block_image, offset=offset)
            if outlines is not None:
                outlines.update(particle_outlines(block_labels, offset))
            table["touches_edge"] = _border_flags(block_labels, particles.region, sample_shape, table["label"])
            tables.append(table)
    if not tables:  # an image without sample rows cannot reach here; kept for an empty grid
        return particle_table(np.zeros((1, 1), dtype=LABEL_DTYPE), pixel_size)
    return _concatenate(tables)
