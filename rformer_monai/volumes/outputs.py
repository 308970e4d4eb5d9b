"""The files written for a segmented stack: label volume as NIfTI and ImageJ TIFF (both to scale in 3D Slicer,
napari and Fiji), the 3-D particle table, the size distribution and orthogonal views through the centre."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from rformer_monai.files import write_atomic, write_csv_atomic
from rformer_monai.reports.figures import OUTLINE_COLOURS, save_figure, size_distribution_figure
from rformer_monai.reports.summary import PARTICLES_SUFFIX
from rformer_monai.volumes.measurement import PARTICLE_COLUMNS_3D, table_rows_3d

LABELS_NIFTI_SUFFIX = "_labels.nii.gz"
LABELS_TIFF_SUFFIX = "_labels.tif"
SIZE_DISTRIBUTION_SUFFIX = "_psd.png"
VIEWS_SUFFIX = "_views.png"
PROBABILITY_SUFFIX = "_prob.tif"
STACK_OUTPUT_SUFFIXES = (LABELS_NIFTI_SUFFIX, LABELS_TIFF_SUFFIX, PARTICLES_SUFFIX, SIZE_DISTRIBUTION_SUFFIX, VIEWS_SUFFIX)
"""Written for every stack (OUT/<stem><suffix>); a stack is done when all exist."""
NM_PER_MICROMETRE = 1000.0
NIFTI_SPATIAL_UNIT = "micron"  # NIfTI has no nm: the nearest of its units (metre, mm, micron)
IMAGEJ_UNIT = "nm"
UINT16_MAX_LABEL = np.iinfo(np.uint16).max
FLOAT32_EXACT_INTEGERS = 2**24
VIEWS_FIGURE_WIDTH_INCHES = 12.0
VIEWS_DPI = 100
NIFTI_GZIP_LEVEL = 1  # nibabel's own default for .nii.gz


@dataclass(frozen=True)
class SlabbedVolume:
    """A ``(z, y, x)`` volume too large to hold, given by its z-slabs in order.

    Attributes:
        shape: the volume's shape.
        dtype: the slabs' element type.
        read_slabs: returns a fresh iterable of the ``(depth, y, x)`` slabs, first to last.
        maximum: the largest value (a label volume's particle count), where the writer needs it.
    """

    shape: tuple[int, int, int]
    dtype: np.dtype
    read_slabs: Callable[[], Iterable[np.ndarray]]
    maximum: float | None = None

    def astype(self, dtype: np.dtype | type) -> SlabbedVolume:
        """The same volume with every slab cast to ``dtype``."""
        return SlabbedVolume(self.shape, np.dtype(dtype), lambda: (slab.astype(dtype) for slab in self.read_slabs()),
                             self.maximum)


def as_slabbed(volume: np.ndarray | SlabbedVolume) -> SlabbedVolume:
    """An array as a :class:`SlabbedVolume` of one slab (a slabbed volume as it is)."""
    if isinstance(volume, SlabbedVolume):
        return volume
    volume = np.asarray(volume)
    return SlabbedVolume(volume.shape, volume.dtype, lambda: (volume,),
                         float(volume.max(initial=0)) if volume.dtype.kind in "iub" else None)


def label_dtype(max_label: int) -> np.dtype:
    """The smallest type ImageJ reads that holds ``max_label``: uint16, else float32 (exact up to 2^24)."""
    if max_label <= UINT16_MAX_LABEL:
        return np.dtype(np.uint16)
    if max_label <= FLOAT32_EXACT_INTEGERS:
        return np.dtype(np.float32)
    raise ValueError(f"{max_label} particles: more than a label TIFF can hold exactly ({FLOAT32_EXACT_INTEGERS}).")


def write_labels_nifti(path: str | os.PathLike, labels: np.ndarray | SlabbedVolume, spacing_nm: Sequence[float]) -> Path:
    """Write a ``(z, y, x)`` label volume as NIfTI (stored x, y, z) with its spacing in micrometres in
    ``pixdim``, the affine and ``xyzt_units``, atomically; slab by slab (NIfTI's x-fastest order is a C-order
    z, y, x volume), so a :class:`SlabbedVolume` is never held whole."""
    import gzip

    import nibabel

    labels = as_slabbed(labels)
    z_nm, y_nm, x_nm = (float(value) / NM_PER_MICROMETRE for value in spacing_nm)
    dtype = np.int32 if (labels.maximum or 0) > UINT16_MAX_LABEL else np.uint16
    header = nibabel.Nifti1Image(np.zeros((1, 1, 1), dtype), np.diag([x_nm, y_nm, z_nm, 1.0])).header
    header.set_data_shape(labels.shape[::-1])
    header.set_xyzt_units(xyz=NIFTI_SPATIAL_UNIT)
    header.set_zooms((x_nm, y_nm, z_nm))
    header.set_intent("label")
    header.set_slope_inter(1.0, 0.0)
    stored = header.get_data_dtype()

    def write(temporary: Path) -> None:
        with gzip.open(temporary, "wb", compresslevel=NIFTI_GZIP_LEVEL) as stream:
            header.write_to(stream)  # sets vox_offset; ends with the empty extension flag
            stream.write(bytes(int(header["vox_offset"]) - stream.tell()))
            for slab in labels.read_slabs():
                stream.write(np.ascontiguousarray(slab, dtype=stored).data)

    return write_atomic(path, write)


def write_imagej_stack(path: str | os.PathLike, volume: np.ndarray | SlabbedVolume, spacing_nm: Sequence[float]) -> Path:
    """Write a ``(z, y, x)`` uint8/uint16/float32 stack as an ImageJ TIFF with its spacing in nm (resolution tags
    and ImageJ's ``spacing`` and ``unit``), atomically, one slice at a time."""
    import tifffile

    volume = as_slabbed(volume)
    z_nm, y_nm, x_nm = (float(value) for value in spacing_nm)
    return write_atomic(
        path,
        lambda temporary: tifffile.imwrite(
            temporary, (plane for slab in volume.read_slabs() for plane in slab), shape=volume.shape,
            dtype=volume.dtype, imagej=True, resolution=(1.0 / x_nm, 1.0 / y_nm),
            metadata={"spacing": z_nm, "unit": IMAGEJ_UNIT, "axes": "ZYX"},
        ),
    )


def write_labels_tiff(path: str | os.PathLike, labels: np.ndarray | SlabbedVolume, spacing_nm: Sequence[float]) -> Path:
    """The label volume as an ImageJ TIFF stack (uint16, or float32 beyond 65535 particles) to scale."""
    labels = as_slabbed(labels)
    return write_imagej_stack(path, labels.astype(label_dtype(int(labels.maximum or 0))), spacing_nm)


def centre_planes(volume: np.ndarray | SlabbedVolume, centre: Sequence[int]) -> tuple[np.ndarray, ...]:
    """The ``(y, x)``, ``(z, x)`` and ``(z, y)`` planes through the voxel ``centre`` (z, y, x), slab by slab."""
    volume = as_slabbed(volume)
    depth, height, width = volume.shape
    xy = np.zeros((height, width), volume.dtype)
    xz, yz = np.zeros((depth, width), volume.dtype), np.zeros((depth, height), volume.dtype)
    start = 0
    for slab in volume.read_slabs():
        stop = start + len(slab)
        if start <= centre[0] < stop:
            xy = np.array(slab[centre[0] - start])
        xz[start:stop], yz[start:stop] = slab[:, centre[1], :], slab[:, :, centre[2]]
        start = stop
    return xy, xz, yz


def write_particle_table_3d(path: str | os.PathLike, columns: Mapping[str, np.ndarray]) -> Path:
    """``<stem>_particles.csv``: one row per particle, the columns of
    :data:`~rformer_monai.volumes.measurement.PARTICLE_COLUMNS_3D`."""
    return write_csv_atomic(path, table_rows_3d(columns), PARTICLE_COLUMNS_3D)


def plot_size_distribution_3d(path: str | os.PathLike, esd_nm: np.ndarray, title: str | None = None) -> Path:
    """Histogram of volume-equivalent sphere diameters with d10, d50 and d90 (particles touching the stack's
    faces are best left out by the caller)."""
    figure = size_distribution_figure(np.asarray(esd_nm), "nm", title)
    figure.axes[0].set_xlabel("volume-equivalent sphere diameter (nm)")
    return save_figure(figure, path)


def _outlined(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, (0.5, 99.5)) if image.size else (0.0, 1.0)
    grey = np.clip((image.astype(np.float64) - low) / max(high - low, 1e-12), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    edges = find_boundaries(labels, mode="inner") & (labels > 0)
    rgb[edges] = OUTLINE_COLOURS[labels[edges] % len(OUTLINE_COLOURS)]
    return rgb


def orthogonal_views_figure(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], spacing_nm: Sequence[float], centre: Sequence[int]
) -> Figure:
    """Three panels, the xy, xz and yz planes through ``centre`` (z, y, x), each to scale in nm, with the
    particles' outlines.

    Args:
        images: the grey ``(y, x)``, ``(z, x)`` and ``(z, y)`` planes.
        labels: the label planes of the same shapes.
        spacing_nm: ``(z, y, x)`` spacing.
        centre: the voxel the planes pass through.
    """
    z_nm, y_nm, x_nm = (float(value) for value in spacing_nm)
    extents = (
        (0, images[0].shape[1] * x_nm, images[0].shape[0] * y_nm, 0),
        (0, images[1].shape[1] * x_nm, images[1].shape[0] * z_nm, 0),
        (0, images[2].shape[1] * y_nm, images[2].shape[0] * z_nm, 0),
    )
    titles = (f"xy, z = {centre[0]}", f"xz, y = {centre[1]}", f"yz, x = {centre[2]}")
    axis_labels = (("x (nm)", "y (nm)"), ("x (nm)", "z (nm)"), ("y (nm)", "z (nm)"))
    widths = [extent[1] for extent in extents]
    heights = [extent[2] for extent in extents]
    aspect = max(heights) / max(sum(widths), 1e-12)
    figure = Figure(figsize=(VIEWS_FIGURE_WIDTH_INCHES, max(3.0, VIEWS_FIGURE_WIDTH_INCHES * aspect + 1.0)),
                    dpi=VIEWS_DPI, layout="constrained")
    grid = figure.add_gridspec(1, 3, width_ratios=widths)
    for index in range(3):
        axes = figure.add_subplot(grid[0, index])
        axes.imshow(_outlined(images[index], labels[index]), extent=extents[index], interpolation="nearest")
        axes.set_title(titles[index])
        axes.set_xlabel(axis_labels[index][0])
        axes.set_ylabel(axis_labels[index][1])
    return figure


def plot_orthogonal_views(
    path: str | os.PathLike,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    spacing_nm: Sequence[float],
    centre: Sequence[int],
) -> Path:
    """Save :func:`orthogonal_views_figure` as a PNG."""
    return save_figure(orthogonal_views_figure(images, labels, spacing_nm, centre), path, dpi=VIEWS_DPI)
