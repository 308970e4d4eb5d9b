"""How far a run's particle counts and median sizes may be from the truth.

The bundle's ``metadata.json`` records, under :data:`MEASUREMENT_ERRORS_KEY`, the relative errors
``(reported - true) / true`` of the two numbers a user reports most, ``particle_count`` and ``ecd_median`` of
``summary.csv``, measured per held-out image by cross-validation of the recipe that made the shipped weights
(``research/summary_errors.py`` measures them and writes the block). From the errors' low and high percentile
``[low, high]``, a reported value ``v`` gives the range ``[v / (1 + high), v / (1 + low)]`` in which the true
value lay on that share of the held-out images.

A range is written only where it means something: the run's weights are the ones the errors describe (their
SHA-256), the settings that change particles are those the errors were measured with, and the trust check did
not flag the image. Otherwise the columns stay empty and the reason is logged and written to ``run.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rformer_monai.bundle_location import METADATA_CONFIG
from rformer_monai.files import sha256_of
from rformer_monai.particles.imagej import DECIMALS

__all__ = [
    "DEFAULT_PERCENTILES",
    "MEASUREMENT_ERRORS_KEY",
    "MEASURED_SETTINGS",
    "RANGE_COLUMNS",
    "ErrorRange",
    "MeasurementErrors",
    "applicable_errors",
    "range_columns",
]

logger = logging.getLogger(__name__)

MEASUREMENT_ERRORS_KEY = "measurement_errors"
"""Key of the error block in the bundle's ``metadata.json``."""
DEFAULT_PERCENTILES = (10.0, 90.0)
"""Percentiles of the per-image errors that bound a range: the true value lay inside on 8 of 10 held-out images."""
MEASURED_SETTINGS = (
    "intensity",
    "flatten_background",
    "threshold",
    "particle_threshold",
    "particle_valley_gain",
    "particle_separation",
    "tta",
)
"""The run settings that change counts and sizes: a range applies only where they equal the measured ones."""
REPORTED = {"count": "particle_count", "ecd_median": "ecd_median"}
"""Error name -> the ``summary.csv`` column it describes."""
RANGE_COLUMNS = ("count_low", "count_high", "ecd_median_low", "ecd_median_high")
"""``summary.csv`` columns of the ranges, empty where no range applies."""
SETTING_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ErrorRange:
    """Relative errors ``(reported - true) / true`` over held-out images: two percentiles and the median."""

    low: float
    median: float
    high: float

    @classmethod
    def of(cls, errors: Sequence[float], percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> ErrorRange:
        """The range of the finite ``errors`` between ``percentiles`` (linear interpolation, numpy's default).

        Raises:
            ValueError: no finite error, or an error of -100 % or below (nothing reported where there was
                something: no range of true values follows from it).
        """
        values = np.asarray([value for value in errors if math.isfinite(value)], dtype=np.float64)
        if values.size == 0:
            raise ValueError("no finite error to take a range from.")
        if values.min() <= -1.0:
            raise ValueError(f"an error of {values.min():.0%}: the reported value was 0 where the truth was not.")
        low, high = np.percentile(values, sorted(percentiles))
        return cls(float(low), float(np.median(values)), float(high))

    def true_range(self, reported: float) -> tuple[float, float]:
        """The range of true values that a ``reported`` value stands for (the errors' low and high percentile)."""
        return reported / (1.0 + self.high), reported / (1.0 + self.low)


@dataclass(frozen=True)
class MeasurementErrors:
    """The per-image errors of ``summary.csv``'s count and median ECD that ``metadata.json`` records for weights.

    Attributes:
        count: errors of ``particle_count``.
        ecd_median: errors of ``ecd_median``.
        percentiles: the percentiles ``count`` and ``ecd_median`` hold as ``low`` and ``high``.
        images: held-out images the errors were measured on.
        weights_sha256: SHA-256 of the weights they describe.
        settings: the :data:`MEASURED_SETTINGS` they were measured with.
        protocol: how they were measured (data, folds, truth), in words.
    """

    count: ErrorRange
    ecd_median: ErrorRange
    percentiles: tuple[float, float]
    images: int
    weights_sha256: str
    settings: dict[str, Any]
    protocol: str

    @classmethod
    def from_metadata(cls, block: Mapping[str, Any]) -> MeasurementErrors:
        """Read the block written by :meth:`to_metadata`."""
        return cls(
            count=ErrorRange(**block["count"]),
            ecd_median=ErrorRange(**block["ecd_median"]),
            percentiles=tuple(float(value) for value in block["percentiles"]),
            images=int(block["images"]),
            weights_sha256=str(block["weights_sha256"]),
            settings=dict(block["settings"]),
            protocol=str(block["protocol"]),
        )

    def to_metadata(self) -> dict[str, Any]:
        """The block for ``metadata.json`` (JSON values only)."""
        block = asdict(self)
        block["percentiles"] = list(self.percentiles)
        return block

    def describe(self) -> str:
        """One sentence on what the errors are, for logs and the report."""
        low, high = (f"{percent:g}" for percent in self.percentiles)
        return (
            f"on {self.images} held-out images the count was off by {self.count.median:+.0%} (median; {low}th to "
            f"{high}th percentile {self.count.low:+.0%} to {self.count.high:+.0%}) and the median ECD by "
            f"{self.ecd_median.median:+.0%} ({self.ecd_median.low:+.0%} to {self.ecd_median.high:+.0%})"
        )


def _same(measured: Any, used: Any) -> bool:
    if isinstance(measured, Mapping) and isinstance(used, Mapping):
        return set(measured) == set(used) and all(_same(measured[key], used[key]) for key in measured)
    if isinstance(measured, bool) or isinstance(used, bool) or measured is None or used is None:
        return measured == used
    if isinstance(measured, (int, float)) and isinstance(used, (int, float)):
        return math.isclose(measured, used, rel_tol=SETTING_TOLERANCE, abs_tol=SETTING_TOLERANCE)
    return measured == used


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def applicable_errors(
    bundle_root: str | os.PathLike | None, settings: Mapping[str, Any]
) -> tuple[MeasurementErrors | None, str]:
    """The errors recorded in the bundle's ``metadata.json`` where they describe this run, else why not.

    Args:
        bundle_root: the bundle folder.
        settings: the run's settings: ``ckpt_path`` and the :data:`MEASURED_SETTINGS`.

    Returns:
        ``(errors, "")`` where they apply; ``(None, reason)`` otherwise.
    """
    if bundle_root is None:
        return None, "no bundle folder given"
    metadata_path = Path(bundle_root) / METADATA_CONFIG
    try:
        block = json.loads(metadata_path.read_text(encoding="utf-8")).get(MEASUREMENT_ERRORS_KEY)
    except (OSError, ValueError) as error:
        return None, f"{metadata_path} could not be read ({error})"
    if not block:
        return None, f"{metadata_path} records no measurement errors"
    errors = MeasurementErrors.from_metadata(block)
    checkpoint = str(settings.get("ckpt_path") or "")
    if not Path(checkpoint).is_file() or sha256_of(checkpoint) != errors.weights_sha256:
        return None, (
            "the errors were measured for other weights (the bundle's own); research/summary_errors.py measures "
            "them for a recipe by cross-validation"
        )
    used = _as_json({name: settings.get(name) for name in errors.settings})
    differing = [name for name, value in errors.settings.items() if not _same(value, used[name])]
    if differing:
        changed = ", ".join(f"{name} {used[name]!r} (measured with {errors.settings[name]!r})" for name in differing)
        return None, f"settings differ from those the errors were measured with: {changed}"
    return errors, ""


def range_columns(row: Mapping[str, Any], errors: MeasurementErrors | None) -> dict[str, Any]:
    """:data:`RANGE_COLUMNS` for one ``summary.csv`` row: the ranges of the true count and median ECD, or empty
    cells where ``errors`` is None, the trust check flagged an image of the row or the value is 0 or missing."""
    columns: dict[str, Any] = dict.fromkeys(RANGE_COLUMNS, "")
    if errors is None or int(row["flagged_count"]):
        return columns
    for name, column in REPORTED.items():
        reported = float(row[column]) if row[column] not in ("", None) else math.nan
        if not (math.isfinite(reported) and reported > 0):
            continue
        low, high = getattr(errors, name).true_range(reported)
        if name == "count":
            columns["count_low"], columns["count_high"] = round(low), round(high)
        else:
            decimals = DECIMALS[row["unit"]]
            columns[f"{name}_low"], columns[f"{name}_high"] = round(low, decimals), round(high, decimals)
    return columns
