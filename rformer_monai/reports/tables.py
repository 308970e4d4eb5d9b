"""Files of a particle analysis: per image and for a whole run.

Per image (:func:`analyse_mask`), in ``output_dir``:

- ``<stem>_labels.tif``: instance labels (uint16, or uint32 above 65535 particles) at the input's full size,
  calibrated in nm for ImageJ/Fiji where the pixel size is known; the data bar rows are 0.
- ``<stem>_particles.csv``: the particle table of :func:`rformer_monai.particles.particle_table` (ImageJ's
  measurements in nm and px, the pixel size and its source), one row per particle.
- ``<stem>_rois.zip``: the particles as ImageJ ROIs (:func:`rformer_monai.reports.roi.write_roi_zip`).
- ``<stem>_overlay.png``: numbered particle outlines over the micrograph, with a scale bar.
- ``<stem>_psd.png``: the ECD histogram (particles off the border) with its cumulative curve and d10/d50/d90.
- ``<stem>_image.json``: the image's record (size, pixel size and source, counts, warnings), written last.

Per run (:func:`rformer_monai.reports.summary.write_folder_summary`): ``summary.csv`` and
``size_distribution.png``/``.svg``, from the files above.

Every file is written atomically (temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rformer_monai.files import write_csv_atomic, write_tiff_atomic
from rformer_monai.particles.imagej import PixelSize, particle_table, table_rows
from rformer_monai.particles.separation import separate_particles
from rformer_monai.reports.figures import plot_overlay, plot_size_distribution
from rformer_monai.reports.roi import ROIS_SUFFIX, particle_outlines, write_roi_zip
from rformer_monai.reports.summary import (
    IMAGE_RECORD_SUFFIX,
    PARTICLES_SUFFIX,
    POOLED_ROW_NAME,
    SIZE_DISTRIBUTION_NAME,
    SUMMARY_COLUMNS,
    SUMMARY_CSV_NAME,
    image_summary,
    write_image_record,
)

__all__ = [
    "ECD_VALUES_KEY",
    "IMAGE_RECORD_SUFFIX",
    "LABELS_SUFFIX",
    "OVERLAY_SUFFIX",
    "PARTICLES_SUFFIX",
    "POOLED_ROW_NAME",
    "PSD_SUFFIX",
    "ParticleAnalysis",
    "ROIS_SUFFIX",
    "SIZE_DISTRIBUTION_NAME",
    "SUMMARY_COLUMNS",
    "SUMMARY_CSV_NAME",
    "analyse_mask",
    "analyse_particles",
    "calibration_warnings",
    "image_record",
    "write_image_summary",
    "write_particle_csv",
    "write_particle_outputs",
]

logger = logging.getLogger(__name__)

LABELS_SUFFIX = "_labels.tif"
OVERLAY_SUFFIX = "_overlay.png"
PSD_SUFFIX = "_psd.png"
# the files analyse_mask writes for every image, as suffixes of <stem>; the record comes last
PARTICLE_OUTPUT_SUFFIXES = (LABELS_SUFFIX, PARTICLES_SUFFIX, ROIS_SUFFIX, OVERLAY_SUFFIX, PSD_SUFFIX, IMAGE_RECORD_SUFFIX)
ECD_VALUES_KEY = "ecd_values"
"""Key of an image's summary row holding the measured ECDs (not written to CSV)."""
UNCALIBRATED_WARNING = "uncalibrated"

UINT16_MAX_LABEL = int(np.iinfo(np.uint16).max)


def write_particle_csv(path: str | os.PathLike, columns: Mapping[str, np.ndarray]) -> Path:
    """Write a particle table (column name -> 1-D array) as CSV, one row per particle; NaN is an empty cell.

    Returns:
        The path written.
    """
    return write_csv_atomic(path, table_rows(columns), list(columns))


def calibration_warnings(pixel_size: PixelSize, name: str) -> list[str]:
    """An image's record warnings about its calibration: :data:`UNCALIBRATED_WARNING` (logged, naming the image
    and how to give the pixel size) where the pixel size is unknown."""
    if pixel_size.nm is not None:
        return []
    logger.warning(
        "%s: no pixel size in the file's metadata, sizes are in px: give it with --pixel-size-nm "
        "(rformer segment), pixel_size_nm= (segment()) or --pixel_size_nm (monai.bundle run)", name,
    )
    return [UNCALIBRATED_WARNING]


def image_record(
    stem: str,
    source: str | None,
    shape: tuple[int, int],
    data_bar_rows: int,
    pixel_size: PixelSize,
    warnings: list[str],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """An image's record (``<stem>_image.json``) before its counts: size, data bar, calibration and the area
    analysed (rows above the data bar, in the unit's area), warnings and ``extra`` entries."""
    height, width = shape
    length = 1.0 if pixel_size.nm is None else pixel_size.nm
    return {
        "stem": stem,
        "source": source,
        "width_px": width,
        "height_px": height,
        "data_bar_rows": data_bar_rows,
        "pixel_size_nm": pixel_size.nm,
        "pixel_size_source": pixel_size.source,
        "unit": pixel_size.unit,
        "sample_area": float((height - data_bar_rows) * width * length**2),
        "warnings": list(warnings),
        **dict(extra),
    }


def write_image_summary(
    output_dir: str | os.PathLike, table: Mapping[str, np.ndarray], record: dict[str, Any]
) -> dict[str, Any]:
    """Write an image's size plot and, last, its record with its counts; return its ``summary.csv`` row
    (:func:`~rformer_monai.reports.summary.image_summary`, with ``ecd_values``)."""
    output_dir, stem, unit = Path(output_dir), record["stem"], record["unit"]
    summary = image_summary(table, record)
    plot_size_distribution(output_dir / f"{stem}{PSD_SUFFIX}", summary[ECD_VALUES_KEY], unit, title=stem)
    record.update(particle_count=summary["particle_count"], ecd_median=summary["ecd_median"])
    write_image_record(output_dir / f"{stem}{IMAGE_RECORD_SUFFIX}", record)
    logger.info(
        "%s: %d particles, median ECD %.4g %s (%d off the border)",
        stem, summary["particle_count"], summary["ecd_median"], unit, summary["measured_count"],
    )
    return summary


def _check_data_bar_rows(data_bar_rows: int, height: int) -> int:
    if isinstance(data_bar_rows, bool) or int(data_bar_rows) != data_bar_rows or not 0 <= data_bar_rows < height:
        raise ValueError(f"data_bar_rows must be a whole number in 0..{height - 1}, got {data_bar_rows!r}.")
    return int(data_bar_rows)


@dataclass
class ParticleAnalysis:
    """One image's particles in memory: what :func:`analyse_particles` finds and :func:`write_particle_outputs`
    writes."""

    labels: np.ndarray
    """(H, W) instance labels at the input's full size (data bar rows 0)."""
    table: dict[str, np.ndarray]
    """The particle table, one row per label (:func:`rformer_monai.particles.particle_table`)."""
    pixel_size: PixelSize
    data_bar_rows: int = 0
    warnings: list[str] = field(default_factory=list)


def analyse_particles(
    mask: np.ndarray,
    image: np.ndarray | None,
    pixel_size: PixelSize,
    data_bar_rows: int = 0,
    name: str = "image",
    **separation_kwargs: Any,
) -> ParticleAnalysis:
    """Separate, count and measure the particles of one mask, in memory.

    The rows above the data bar are the sample: the particles are separated (:func:`separate_particles`) and
    measured there; a particle touching the sample's border (the data bar's top included) is flagged.

    Args:
        mask: (H, W) particle mask at the input's full size, non-zero is particle.
        image: (H, W) or (H, W, C) micrograph as stored (for ``Mean``), or None.
        pixel_size: the pixel size in nm (or None) and its source.
        data_bar_rows: rows at the bottom that are the instrument's data bar (not analysed).
        name: the image's name in the warning of an unknown pixel size.
        **separation_kwargs: passed on to :func:`separate_particles`; a full-size ``probability`` is cropped
            to the sample rows like the mask.

    Raises:
        ValueError: on a non-2-D mask, an image of another size or a bad ``data_bar_rows``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {tuple(mask.shape)}.")
    height, width = mask.shape
    data_bar_rows = _check_data_bar_rows(data_bar_rows, height)
    sample_rows = height - data_bar_rows
    if image is not None and (np.ndim(image) not in (2, 3) or np.shape(image)[:2] != mask.shape):
        raise ValueError(f"image must be (H, W) or (H, W, C) with (H, W) = {mask.shape}, got {np.shape(image)}.")
    probability = separation_kwargs.pop("probability", None)
    if probability is not None and np.shape(probability) == mask.shape:
        probability = np.asarray(probability)[:sample_rows]
    sample_labels = separate_particles(mask[:sample_rows], probability=probability, **separation_kwargs)
    warnings = calibration_warnings(pixel_size, name)
    sample_image = None if image is None else np.asarray(image)[:sample_rows]
    table = particle_table(sample_labels, pixel_size, image=sample_image)
    label_dtype = np.uint16 if sample_labels.max(initial=0) <= UINT16_MAX_LABEL else np.uint32
    labels = np.zeros(mask.shape, dtype=label_dtype)
    labels[:sample_rows] = sample_labels
    return ParticleAnalysis(labels, table, pixel_size, data_bar_rows, warnings)


def write_particle_outputs(
    analysis: ParticleAnalysis,
    image: np.ndarray | None,
    output_dir: str | os.PathLike,
    stem: str,
    source: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write one image's files (see the module docstring), its record last.

    Args:
        analysis: the image's particles (:func:`analyse_particles`).
        image: (H, W) or (H, W, C) micrograph for the overlay, or None to draw on the mask.
        output_dir: folder of the files (created when missing).
        stem: file name stem of the image's outputs.
        source: the input file, for the record.
        extra: more entries of the record (e.g. the contrast decision).

    Returns:
        The image's summary row (:func:`rformer_monai.reports.summary.image_summary`), with ``ecd_values``.
    """
    if not stem or Path(stem).name != stem:
        raise ValueError(f"stem must be a plain, non-empty file name stem, got {stem!r}.")
    output_dir = Path(output_dir)
    sample_rows = analysis.labels.shape[0] - analysis.data_bar_rows
    sample_labels = analysis.labels[:sample_rows]
    write_tiff_atomic(output_dir / f"{stem}{LABELS_SUFFIX}", analysis.labels, analysis.pixel_size.nm)
    write_particle_csv(output_dir / f"{stem}{PARTICLES_SUFFIX}", analysis.table)
    write_roi_zip(output_dir / f"{stem}{ROIS_SUFFIX}", particle_outlines(sample_labels))
    edge_labels = analysis.table["label"][np.asarray(analysis.table["touches_edge"], dtype=bool)]
    sample_image = None if image is None else np.asarray(image)[:sample_rows]
    plot_overlay(output_dir / f"{stem}{OVERLAY_SUFFIX}", sample_image, sample_labels, analysis.pixel_size.nm, edge_labels)
    record = image_record(
        stem, source, analysis.labels.shape, analysis.data_bar_rows, analysis.pixel_size, analysis.warnings,
        extra or {},
    )
    return write_image_summary(output_dir, analysis.table, record)


def analyse_mask(
    mask: np.ndarray,
    image: np.ndarray | None,
    pixel_size_nm: float | None,
    output_dir: str | os.PathLike,
    stem: str,
    data_bar_rows: int = 0,
    pixel_size_source: str | None = None,
    source: str | None = None,
    extra: Mapping[str, Any] | None = None,
    **separation_kwargs: Any,
) -> dict[str, Any]:
    """Separate, count and measure the particles of one mask and write the image's files.

    :func:`analyse_particles` then :func:`write_particle_outputs`.

    Args:
        mask: (H, W) particle mask at the input's full size, non-zero is particle.
        image: (H, W) or (H, W, C) micrograph, or None to draw on the mask.
        pixel_size_nm: pixel size in nm, or None (sizes in pixels, with a logged warning).
        output_dir: folder of the files (created when missing).
        stem: file name stem of the image's outputs.
        data_bar_rows: rows at the bottom that are the instrument's data bar (not analysed).
        pixel_size_source: where the pixel size came from; default ``given`` where there is one, else ``unknown``.
        source: the input file, for the image's record.
        extra: more entries of the image's record (e.g. the contrast decision).
        **separation_kwargs: passed on to :func:`separate_particles`.

    Returns:
        The image's ``summary.csv`` row, with the measured ECDs under ``ecd_values``.

    Raises:
        ValueError: on a non-2-D mask, an image of another size, an empty stem or a bad ``data_bar_rows``.
    """
    if not stem or Path(stem).name != stem:
        raise ValueError(f"stem must be a plain, non-empty file name stem, got {stem!r}.")
    if pixel_size_source is None:
        pixel_size_source = "unknown" if pixel_size_nm is None else "given"
    pixel_size = PixelSize(None if pixel_size_nm is None else float(pixel_size_nm), pixel_size_source)
    analysis = analyse_particles(mask, image, pixel_size, data_bar_rows, name=source or stem, **separation_kwargs)
    return write_particle_outputs(analysis, image, output_dir, stem, source=source, extra=extra)
