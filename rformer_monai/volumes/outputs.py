"""The files written for a segmented stack: label volume as NIfTI and ImageJ TIFF (both to scale in 3D Slicer,
napari and Fiji), the 3-D particle table, the size distribution and orthogonal views through the centre."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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


def label_dtype(max_label: int) -> np.dtype:
    """The smallest type ImageJ reads that holds ``max_label``: uint16, else float32 (exact up to 2^24)."""
    if max_label <= UINT16_MAX_LABEL:
        return np.dtype(np.uint16)
    if max_label <= FLOAT32_EXACT_INTEGERS:
        return np.dtype(np.float32)
    raise ValueError(f"{max_label} particles: more than a label TIFF can hold exactly ({FLOAT32_EXACT_INTEGERS}).")


def write_labels_nifti(path: str | os.PathLike, labels: np.ndarray, spacing_nm: Sequence[float]) -> Path:
    """Write a ``(z, y, x)`` label volume as NIfTI (stored x, y, z) with its spacing in micrometres in
    ``pixdim``, the affine and ``xyzt_units``, atomically."""
    import nibabel

    z_nm, y_nm, x_nm = (float(value) / NM_PER_MICROMETRE for value in spacing_nm)
    dtype = np.int32 if labels.max(initial=0) > UINT16_MAX_LABEL else np.uint16
    image = nibabel.Nifti1Image(np.asarray(labels, dtype=dtype).transpose(2, 1, 0), np.diag([x_nm, y_nm, z_nm, 1.0]))
    image.header.set_xyzt_units(xyz=NIFTI_SPATIAL_UNIT)
    image.header.set_zooms((x_nm, y_nm, z_nm))
    image.header.set_intent("label")

    def write(temporary: Path) -> None:
        named = temporary.with_name(temporary.name + LABELS_NIFTI_SUFFIX)  # nibabel picks gzip by the suffix
        try:
            nibabel.save(image, str(named))
            os.replace(named, temporary)
        finally:
            named.unlink(missing_ok=True)

    return write_atomic(path, write)


def write_imagej_stack(path: str | os.PathLike, volume: np.ndarray, spacing_nm: Sequence[float]) -> Path:
    """Write a ``(z, y, x)`` uint8/uint16/float32 stack as an ImageJ TIFF with its spacing in nm (resolution tags
    and ImageJ's ``spacing`` and ``unit``), atomically."""
    import tifffile

    z_nm, y_nm, x_nm = (float(value) for value in spacing_nm)
    return write_atomic(
        path,
        lambda temporary: tifffile.imwrite(
            temporary, volume, imagej=True, resolution=(1.0 / x_nm, 1.0 / y_nm),
            metadata={"spacing": z_nm, "unit": IMAGEJ_UNIT, "axes": "ZYX"},
        ),
    )


def write_labels_tiff(path: str | os.PathLike, labels: np.ndarray, spacing_nm: Sequence[float]) -> Path:
    """The label volume as an ImageJ TIFF stack (uint16, or float32 beyond 65535 particles) to scale."""
    return write_imagej_stack(path, np.asarray(labels).astype(label_dtype(int(labels.max(initial=0)))), spacing_nm)


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
