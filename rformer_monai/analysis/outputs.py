"""Files of a particle analysis: per image and for a whole run.

Per image (:func:`analyse_mask`), in ``output_dir``:

- ``<stem>_labels.tif``: instance labels (uint16, or uint32 above 65535 particles) at the
  input's full size; the data bar rows are 0.
- ``<stem>_particles.csv``: the particle table of :func:`measure_particles`, one row per particle.
- ``<stem>_overlay.png``: particle outlines over the micrograph, with a scale bar.
- ``<stem>_psd.png``: the ECD histogram (particles off the border) with d10/d50/d90.

Per run (:func:`write_run_summary`): ``summary.csv`` (one row per image and a final ``pooled``
row) and ``size_distribution.png`` (the pooled ECD histogram).

Every file is written atomically (temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rformer_monai.analysis.particles import (
    SIZE_STATISTICS,
    SUMMARY_KEYS,
    measure_particles,
    particle_table_rows,
    separate_particles,
    size_statistics,
    summarize_particles,
)
from rformer_monai.analysis.plots import plot_overlay, plot_size_distribution
from rformer_monai.engines.writers import write_tiff_atomic

__all__ = [
    "CONTRAST_COLUMN",
    "ECD_VALUES_KEY",
    "LABELS_SUFFIX",
    "OVERLAY_SUFFIX",
    "PARTICLES_SUFFIX",
    "POOLED_ROW_NAME",
    "PSD_SUFFIX",
    "SIZE_DISTRIBUTION_NAME",
    "SUMMARY_COLUMNS",
    "SUMMARY_CSV_NAME",
    "WARNING_COLUMN",
    "analyse_mask",
    "write_csv_atomic",
    "write_particle_csv",
    "write_run_summary",
]

logger = logging.getLogger(__name__)

LABELS_SUFFIX = "_labels.tif"
PARTICLES_SUFFIX = "_particles.csv"
OVERLAY_SUFFIX = "_overlay.png"
PSD_SUFFIX = "_psd.png"
# the files analyse_mask writes for every image, as suffixes of <stem>
PARTICLE_OUTPUT_SUFFIXES = (LABELS_SUFFIX, PARTICLES_SUFFIX, OVERLAY_SUFFIX, PSD_SUFFIX)
SUMMARY_CSV_NAME = "summary.csv"
SIZE_DISTRIBUTION_NAME = "size_distribution.png"
POOLED_ROW_NAME = "pooled"
"""``stem`` of the last row of ``summary.csv``, the statistics of all images' particles together."""

CONTRAST_COLUMN = "contrast"
"""Column of the particles' polarity the image was read with (``bright``/``dark``; empty where unknown)."""
WARNING_COLUMN = "warning"
"""Column of the trust check's reasons (:func:`rformer_monai.trust.trust_warning`); empty when fine."""
SUMMARY_COLUMNS: tuple[str, ...] = ("stem", *SUMMARY_KEYS, CONTRAST_COLUMN, WARNING_COLUMN)
"""Columns of ``summary.csv`` (the keys of :func:`analyse_mask`'s row, except the ECD values)."""
ECD_VALUES_KEY = "ecd_values"
"""Key of the row returned by :func:`analyse_mask` holding the measured ECDs (not written to CSV)."""

UINT16_MAX_LABEL = int(np.iinfo(np.uint16).max)


def write_csv_atomic(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str]
) -> Path:
    """Write ``rows`` under a header of ``fieldnames`` as CSV, atomically.

    Args:
        path: the CSV file; its folder is created when missing.
        rows: one mapping per row; keys not in ``fieldnames`` are ignored.
        fieldnames: the columns, in order.

    Returns:
        The path written.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def write_particle_csv(path: str | os.PathLike, columns: Mapping[str, np.ndarray]) -> Path:
    """Write a particle table (see :func:`measure_particles`) as CSV, one row per particle.

    Args:
        path: the CSV file.
        columns: column name -> 1-D array.

    Returns:
        The path written.
    """
    return write_csv_atomic(path, particle_table_rows(columns), list(columns))


def _check_data_bar_rows(data_bar_rows: int, height: int) -> int:
    if isinstance(data_bar_rows, bool) or int(data_bar_rows) != data_bar_rows or not 0 <= data_bar_rows < height:
        raise ValueError(f"data_bar_rows must be a whole number in 0..{height - 1}, got {data_bar_rows!r}.")
    return int(data_bar_rows)


def analyse_mask(
    mask: np.ndarray,
    image: np.ndarray | None,
    pixel_size_nm: float | None,
    output_dir: str | os.PathLike,
    stem: str,
    data_bar_rows: int = 0,
    contrast: str = "",
    warning: str = "",
    **separation_kwargs: Any,
) -> dict[str, Any]:
    """Separate, count and measure the particles of one mask and write the image's files.

    The rows above the data bar are the sample: the particles are separated
    (:func:`separate_particles`) and measured there, a particle touching the sample's border
    (the data bar's top included) is flagged and left out of the size statistics.

    Args:
        mask: (H, W) particle mask at the input's full size, non-zero is particle.
        image: (H, W) or (H, W, C) micrograph for the overlay, or None to draw on the mask.
        pixel_size_nm: pixel size in nm, or None (sizes in pixels, with a logged warning).
        output_dir: folder of the files (created when missing).
        stem: file name stem of the image's outputs.
        data_bar_rows: rows at the bottom that are the instrument's data bar (not analysed).
        contrast: the particles' polarity the image was read with, for the summary row.
        warning: the trust check's reasons (empty when fine), for the summary row.
        **separation_kwargs: passed on to :func:`separate_particles`; a full-size
            ``probability`` is cropped to the sample rows like the mask.

    Returns:
        The image's summary row: ``stem``, ``particle_count``, ``edge_particle_count``,
        ``measured_count``, ``ecd_mean``, ``ecd_median``, ``ecd_d10``, ``ecd_d50``, ``ecd_d90``,
        ``area_fraction``, ``unit``, ``contrast`` and ``warning`` (the columns of ``summary.csv``), and
        ``ecd_values``: the measured ECDs (1-D array) to pool in :func:`write_run_summary`.

    Raises:
        ValueError: on a non-2-D mask, an image of another size, an empty stem or a bad
            ``data_bar_rows``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {tuple(mask.shape)}.")
    if not stem or Path(stem).name != stem:
        raise ValueError(f"stem must be a plain, non-empty file name stem, got {stem!r}.")
    height, width = mask.shape
    data_bar_rows = _check_data_bar_rows(data_bar_rows, height)
    sample_rows = height - data_bar_rows
    if image is not None and (np.ndim(image) not in (2, 3) or np.shape(image)[:2] != mask.shape):
        raise ValueError(f"image must be (H, W) or (H, W, C) with (H, W) = {mask.shape}, got {np.shape(image)}.")
    probability = separation_kwargs.pop("probability", None)
    if probability is not None and np.shape(probability) == mask.shape:
        probability = np.asarray(probability)[:sample_rows]

    sample_labels = separate_particles(mask[:sample_rows], probability=probability, **separation_kwargs)
    columns = measure_particles(sample_labels, pixel_size_nm)
    unit_length = 1.0 if pixel_size_nm is None else float(pixel_size_nm)
    summary = summarize_particles(columns, sample_rows * width * unit_length**2)
    unit = summary["unit"]
    measured_ecd = np.asarray(columns[f"ecd_{unit}"])[~np.asarray(columns["touches_edge"], dtype=bool)]

    output_dir = Path(output_dir)
    label_dtype = np.uint16 if sample_labels.max(initial=0) <= UINT16_MAX_LABEL else np.uint32
    labels = np.zeros(mask.shape, dtype=label_dtype)
    labels[:sample_rows] = sample_labels
    write_tiff_atomic(output_dir / f"{stem}{LABELS_SUFFIX}", labels)
    write_particle_csv(output_dir / f"{stem}{PARTICLES_SUFFIX}", columns)
    sample_image = None if image is None else np.asarray(image)[:sample_rows]
    plot_overlay(output_dir / f"{stem}{OVERLAY_SUFFIX}", sample_image, sample_labels, pixel_size_nm)
    plot_size_distribution(output_dir / f"{stem}{PSD_SUFFIX}", measured_ecd, unit, title=stem)
    logger.info(
        "%s: %d particles (%d off the border), median ECD %.4g %s",
        stem, summary["particle_count"], summary["measured_count"], summary["ecd_median"], unit,
    )
    return {"stem": stem, **summary, CONTRAST_COLUMN: contrast, WARNING_COLUMN: warning, ECD_VALUES_KEY: measured_ecd}


def _flagged_count(rows: Sequence[Mapping[str, Any]]) -> str:
    """The pooled row's warning: how many images were flagged, empty when none."""
    flagged = sum(bool(row[WARNING_COLUMN]) for row in rows)
    return f"{flagged} of {len(rows)} images flagged" if flagged else ""


def write_run_summary(
    rows: Sequence[Mapping[str, Any]],
    ecd_values: np.ndarray | Sequence[np.ndarray],
    output_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Write ``summary.csv`` (the images' rows and a pooled row) and the pooled size distribution.

    The pooled row (``stem = "pooled"``) sums the counts, takes the ECD statistics of all
    ``ecd_values`` together and averages the images' particle area fractions.

    Args:
        rows: the summary rows returned by :func:`analyse_mask` (all in one unit).
        ecd_values: the measured ECDs to pool: one 1-D array, or one per image (typically
            ``[row["ecd_values"] for row in rows]``).
        output_dir: folder of ``summary.csv`` and ``size_distribution.png``.

    Returns:
        The pooled row.

    Raises:
        ValueError: if ``rows`` is empty, lacks a summary column or mixes units.
    """
    if not rows:
        raise ValueError("rows must hold at least one image summary, got none.")
    for row in rows:
        missing = [name for name in SUMMARY_COLUMNS if name not in row]
        if missing:
            raise ValueError(f"rows must hold the summary columns; row {row.get('stem')!r} lacks {missing}.")
    units = sorted({str(row["unit"]) for row in rows})
    if len(units) != 1:
        raise ValueError(f"rows must all be in one unit to pool them, got units {units}.")
    if isinstance(ecd_values, np.ndarray):
        pooled_ecd = ecd_values.astype(np.float64).ravel()
    else:
        arrays = [np.asarray(values, dtype=np.float64).ravel() for values in ecd_values]
        pooled_ecd = np.concatenate(arrays) if arrays else np.zeros(0)
    statistics = size_statistics(pooled_ecd)
    area_fractions = [float(row["area_fraction"]) for row in rows]
    pooled: dict[str, Any] = {
        "stem": POOLED_ROW_NAME,
        "particle_count": int(sum(int(row["particle_count"]) for row in rows)),
        "edge_particle_count": int(sum(int(row["edge_particle_count"]) for row in rows)),
        "measured_count": statistics["count"],
        **{f"ecd_{name}": statistics[name] for name in SIZE_STATISTICS[1:]},
        "area_fraction": float(np.mean(area_fractions)) if area_fractions else math.nan,
        "unit": units[0],
        CONTRAST_COLUMN: "/".join(sorted({str(row[CONTRAST_COLUMN]) for row in rows} - {""})),
        WARNING_COLUMN: _flagged_count(rows),
    }
    output_dir = Path(output_dir)
    write_csv_atomic(output_dir / SUMMARY_CSV_NAME, [*rows, pooled], SUMMARY_COLUMNS)
    plot_size_distribution(output_dir / SIZE_DISTRIBUTION_NAME, pooled_ecd, units[0], title="all images")
    return pooled
