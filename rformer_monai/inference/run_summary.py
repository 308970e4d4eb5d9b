"""The streamed inference's run summary (``configs/inference_large.json``): ``summary.csv`` (one row per image
analysed in the run and a final ``pooled`` row) and ``size_distribution.png`` (the pooled ECD histogram).

The bundle's whole-image inference (``inference.json``) writes the richer folder summary of
:func:`rformer_monai.reports.write_folder_summary` from the image records; the streamed analysis writes no image
record, so it keeps this summary of its own rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rformer_monai.files import write_csv_atomic
from rformer_monai.particles.measurement import SIZE_STATISTICS, SUMMARY_KEYS, size_statistics
from rformer_monai.reports.figures import plot_size_distribution
from rformer_monai.reports.summary import POOLED_ROW_NAME, SIZE_DISTRIBUTION_NAME, SUMMARY_CSV_NAME
from rformer_monai.reports.tables import LABELS_SUFFIX, OVERLAY_SUFFIX, PARTICLES_SUFFIX, PSD_SUFFIX

__all__ = [
    "POOLED_ROW_NAME",
    "SIZE_DISTRIBUTION_NAME",
    "STREAMED_OUTPUT_SUFFIXES",
    "SUMMARY_COLUMNS",
    "SUMMARY_CSV_NAME",
    "write_run_summary",
]

STREAMED_OUTPUT_SUFFIXES = (LABELS_SUFFIX, PARTICLES_SUFFIX, OVERLAY_SUFFIX, PSD_SUFFIX)
"""The particle files the streamed analysis writes for every image, as suffixes of ``<stem>``."""
"""``stem`` of the last row of ``summary.csv``, the statistics of all images' particles together."""
SUMMARY_COLUMNS: tuple[str, ...] = ("stem", *SUMMARY_KEYS)
"""Columns of ``summary.csv``."""


def write_run_summary(
    rows: Sequence[Mapping[str, Any]],
    ecd_values: np.ndarray | Sequence[np.ndarray],
    output_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Write ``summary.csv`` (the images' rows and a pooled row) and the pooled size distribution.

    The pooled row (``stem = "pooled"``) sums the counts, takes the ECD statistics of all
    ``ecd_values`` together and averages the images' particle area fractions.

    Args:
        rows: the images' summary rows (all in one unit).
        ecd_values: the measured ECDs to pool: one 1-D array, or one per image.
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
    }
    output_dir = Path(output_dir)
    write_csv_atomic(output_dir / SUMMARY_CSV_NAME, [*rows, pooled], SUMMARY_COLUMNS)
    plot_size_distribution(output_dir / SIZE_DISTRIBUTION_NAME, pooled_ecd, units[0], title="all images")
    return pooled
