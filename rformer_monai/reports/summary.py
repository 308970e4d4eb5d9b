"""The run's summary, computed from the per-image files in the output folder.

Every image's analysis leaves ``<stem>_particles.csv`` (one row per particle) and ``<stem>_image.json`` (its
size, pixel size and source, written last: an image is complete when it exists). :func:`write_folder_summary`
reads them all, so a resumed, interrupted or sharded run's ``summary.csv`` and size-distribution figures equal
an uninterrupted run's. Images calibrated in nm and images in px are summarised apart: one ``pooled`` row per
unit, never mixed.

Columns of ``summary.csv`` (:data:`SUMMARY_COLUMNS`): ``stem``, ``unit``, ``pixel_size_nm``,
``pixel_size_source``, the counts (``particle_count``, ``edge_particle_count``, ``measured_count``,
``flagged_count``: 1 where the trust check flagged the image, the flagged images on a pooled row), the ECD
statistics of the particles off the border (:data:`ECD_STATISTICS`), ``area_fraction``, the ranges in which the
true count and median ECD likely lie (:data:`~rformer_monai.reports.uncertainty.RANGE_COLUMNS`, from the weights'
cross-validation errors; empty where those do not apply), ``contrast`` and ``warning`` (the trust check's
reasons). A statistic is one
entry of :data:`ECD_STATISTICS`, a count one entry of :data:`COUNTS`: adding a column is adding an entry.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rformer_monai.files import write_atomic, write_csv_atomic
from rformer_monai.particles.imagej import DECIMALS
from rformer_monai.reports.figures import plot_size_distribution
from rformer_monai.reports.uncertainty import RANGE_COLUMNS, MeasurementErrors, range_columns

__all__ = [
    "COUNTS",
    "ECD_STATISTICS",
    "IMAGE_RECORD_SUFFIX",
    "POOLED_ROW_NAME",
    "SIZE_DISTRIBUTION_NAME",
    "SUMMARY_COLUMNS",
    "SUMMARY_CSV_NAME",
    "image_summary",
    "read_image_records",
    "RunSummary",
    "read_particle_csv",
    "write_folder_summary",
    "write_image_record",
]

logger = logging.getLogger(__name__)

IMAGE_RECORD_SUFFIX = "_image.json"
PARTICLES_SUFFIX = "_particles.csv"
SUMMARY_CSV_NAME = "summary.csv"
SIZE_DISTRIBUTION_NAME = "size_distribution.png"
POOLED_ROW_NAME = "pooled"
"""``stem`` of the pooled rows of ``summary.csv`` (one per unit), the statistics of all images' particles."""
WARNING_COLUMN = "warning"
"""An image record's and ``summary.csv``'s trust-check reasons (:mod:`rformer_monai.trust`), empty when fine."""
CONTRAST_COLUMN = "contrast"
"""The particles' polarity an image was read with (``bright``/``dark``, the record's ``contrast``)."""
RATIO_DECIMALS = 4
UNITS = ("nm", "px")


def _percentile(percent: float) -> Callable[[np.ndarray], float]:
    return lambda ecd: float(np.percentile(ecd, percent))


def _std(ecd: np.ndarray) -> float:
    return float(np.std(ecd, ddof=1)) if ecd.size > 1 else 0.0


def _span(ecd: np.ndarray) -> float:
    d10, d50, d90 = np.percentile(ecd, [10.0, 50.0, 90.0])
    return float((d90 - d10) / d50) if d50 > 0 else math.nan


ECD_STATISTICS: dict[str, tuple[Callable[[np.ndarray], float], bool]] = {
    "ecd_mean": (lambda ecd: float(ecd.mean()), True),
    "ecd_std": (_std, True),
    "ecd_cv": (lambda ecd: _std(ecd) / float(ecd.mean()) if ecd.mean() > 0 else math.nan, False),
    "ecd_min": (lambda ecd: float(ecd.min()), True),
    "ecd_median": (lambda ecd: float(np.median(ecd)), True),
    "ecd_max": (lambda ecd: float(ecd.max()), True),
    "ecd_d10": (_percentile(10.0), True),
    "ecd_d50": (_percentile(50.0), True),
    "ecd_d90": (_percentile(90.0), True),
    "ecd_span": (_span, False),
}
"""Statistics of the number-based ECD distribution of the particles off the border: name -> (function of the
1-D ECDs, whether it is a length). ``ecd_std`` is the sample standard deviation, ``ecd_cv`` = std / mean,
``ecd_span`` = (d90 - d10) / d50; percentiles interpolate linearly (numpy's default)."""

COUNTS: tuple[str, ...] = ("particle_count", "edge_particle_count", "measured_count", "flagged_count")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "stem", "unit", "pixel_size_nm", "pixel_size_source", *COUNTS, *ECD_STATISTICS, "area_fraction",
    *RANGE_COLUMNS, CONTRAST_COLUMN, WARNING_COLUMN,
)
"""Columns of ``summary.csv``."""


def _round(value: float, decimals: int) -> float:
    return value if not math.isfinite(value) else round(value, decimals)


def ecd_statistics(ecd: np.ndarray, unit: str) -> dict[str, float]:
    """:data:`ECD_STATISTICS` of the 1-D ECDs ``ecd`` in ``unit``, rounded (NaN for no particle)."""
    ecd = np.asarray(ecd, dtype=np.float64).ravel()
    statistics = {}
    for name, (function, is_length) in ECD_STATISTICS.items():
        value = function(ecd) if ecd.size else math.nan
        statistics[name] = _round(value, DECIMALS[unit] if is_length else RATIO_DECIMALS)
    return statistics


def _flags(table: Mapping[str, Sequence[Any]], name: str) -> np.ndarray:
    return np.array([str(value).strip().lower() in ("true", "1") for value in table.get(name, [])], dtype=bool)


def image_summary(table: Mapping[str, Sequence[Any]], record: Mapping[str, Any]) -> dict[str, Any]:
    """One image's ``summary.csv`` row from its particle table (columns, as read or as measured) and its record.

    Args:
        table: the particle table (:func:`rformer_monai.particles.particle_table` or :func:`read_particle_csv`).
        record: the image's record (:func:`write_image_record`): ``stem``, ``unit``, ``pixel_size_nm``,
            ``pixel_size_source`` and ``sample_area`` (in the unit's area).

    Returns:
        The row, with the measured ECDs under ``"ecd_values"`` (not a column) for pooling.
    """
    unit = record["unit"]
    ecd = np.asarray([float(value) for value in table.get(f"ECD_{unit}", [])], dtype=np.float64)
    area = np.asarray([float(value) for value in table.get(f"Area_{unit}2", [])], dtype=np.float64)
    edge = _flags(table, "touches_edge")
    if edge.size != ecd.size:
        edge = np.zeros(ecd.size, dtype=bool)
    measured = ecd[~edge]
    warning = str(record.get(WARNING_COLUMN) or "")
    sample_area = float(record["sample_area"])
    return {
        "stem": record["stem"],
        "unit": unit,
        "pixel_size_nm": record.get("pixel_size_nm") if record.get("pixel_size_nm") is not None else "",
        "pixel_size_source": record.get("pixel_size_source", "unknown"),
        "particle_count": int(ecd.size),
        "edge_particle_count": int(edge.sum()),
        "measured_count": int(measured.size),
        "flagged_count": int(bool(warning)),
        **ecd_statistics(measured, unit),
        "area_fraction": _round(float(area.sum()) / sample_area, RATIO_DECIMALS) if sample_area > 0 else math.nan,
        **dict.fromkeys(RANGE_COLUMNS, ""),
        CONTRAST_COLUMN: str(record.get(CONTRAST_COLUMN) or ""),
        WARNING_COLUMN: warning,
        "ecd_values": measured,
    }


def write_image_record(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write an image's record (JSON) atomically; written last, it marks the image's outputs complete."""
    text = json.dumps(dict(record), indent=2, default=str)
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def read_particle_csv(path: str | os.PathLike) -> dict[str, list[str]]:
    """A particle CSV as columns of strings (column name -> cells), header order kept."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns: dict[str, list[str]] = {name: [] for name in reader.fieldnames or []}
        for row in reader:
            for name in columns:
                columns[name].append(row[name])
    return columns


def read_image_records(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of every complete image in ``output_dir`` (record and particle table present), by stem."""
    output_dir = Path(output_dir)
    records = []
    for path in sorted(output_dir.glob(f"*{IMAGE_RECORD_SUFFIX}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            logger.warning("%s: unreadable image record left out of the summary (%s)", path, error)
            continue
        if (output_dir / f"{record['stem']}{PARTICLES_SUFFIX}").is_file():
            records.append(record)
    return sorted(records, key=lambda record: record["stem"])


def _pooled_row(rows: Sequence[Mapping[str, Any]], unit: str) -> dict[str, Any]:
    sizes = sorted({str(row["pixel_size_nm"]) for row in rows})
    sources = sorted({str(row["pixel_size_source"]) for row in rows})
    flagged = int(sum(int(row["flagged_count"]) for row in rows))
    ecd = np.concatenate([np.asarray(row["ecd_values"], dtype=np.float64) for row in rows])
    fractions = [float(row["area_fraction"]) for row in rows]
    return {
        "stem": POOLED_ROW_NAME,
        "unit": unit,
        "pixel_size_nm": sizes[0] if len(sizes) == 1 else "",
        "pixel_size_source": "+".join(sources),
        **{name: int(sum(int(row[name]) for row in rows)) for name in COUNTS if name != "flagged_count"},
        "flagged_count": flagged,
        **ecd_statistics(ecd, unit),
        "area_fraction": _round(float(np.mean(fractions)), RATIO_DECIMALS),
        CONTRAST_COLUMN: "/".join(sorted({str(row[CONTRAST_COLUMN]) for row in rows} - {""})),
        WARNING_COLUMN: f"{flagged} of {len(rows)} images flagged" if flagged else "",
        "ecd_values": ecd,
    }


@dataclass
class RunSummary:
    """The rows of ``summary.csv``: one per image, one pooled row per unit (each with its ``ecd_values``)."""

    images: list[dict[str, Any]] = field(default_factory=list)
    pooled: list[dict[str, Any]] = field(default_factory=list)


def write_folder_summary(output_dir: str | os.PathLike, errors: MeasurementErrors | None = None) -> RunSummary:
    """Write ``summary.csv`` and the pooled size-distribution figures from the image files in ``output_dir``.

    One row per complete image, then one ``pooled`` row per unit present (nm, then px). The pooled ECD
    histogram (300 dpi PNG and SVG) is ``size_distribution.png`` for the first unit and
    ``size_distribution_px.png`` for px images beside nm ones.

    Args:
        output_dir: the run's output folder.
        errors: the weights' measured errors where they apply to the run
            (:func:`~rformer_monai.reports.uncertainty.applicable_errors`), for the range columns; None leaves
            them empty.

    Returns:
        The rows written; no rows (nothing written) when no image is complete.
    """
    output_dir = Path(output_dir)
    rows = []
    for record in read_image_records(output_dir):
        table = read_particle_csv(output_dir / f"{record['stem']}{PARTICLES_SUFFIX}")
        rows.append(image_summary(table, record))
    if not rows:
        return RunSummary()
    pooled = []
    for unit in UNITS:
        unit_rows = [row for row in rows if row["unit"] == unit]
        if unit_rows:
            pooled.append(_pooled_row(unit_rows, unit))
    for row in [*rows, *pooled]:
        row.update(range_columns(row, errors))
    write_csv_atomic(output_dir / SUMMARY_CSV_NAME, [*rows, *pooled], SUMMARY_COLUMNS)
    for index, row in enumerate(pooled):
        name = SIZE_DISTRIBUTION_NAME if index == 0 else SIZE_DISTRIBUTION_NAME.replace(".png", f"_{row['unit']}.png")
        title = f"all {'calibrated' if row['unit'] == 'nm' else 'uncalibrated'} images"
        plot_size_distribution(output_dir / name, row["ecd_values"], row["unit"], title=title, with_svg=True)
    return RunSummary(rows, pooled)
