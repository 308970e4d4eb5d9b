"""The ranges of the true count and median ECD: error percentiles, the range they give, when they apply to a
run, and the summary.csv columns they fill."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rformer_monai.files import sha256_of
from rformer_monai.reports import analyse_mask, write_folder_summary
from rformer_monai.reports.uncertainty import (
    MEASUREMENT_ERRORS_KEY,
    RANGE_COLUMNS,
    ErrorRange,
    MeasurementErrors,
    applicable_errors,
    range_columns,
)

SETTINGS = {
    "threshold": 0.5,
    "particle_threshold": 0.7,
    "particle_valley_gain": 0.0,
    "particle_separation": {"min_size_px": 10, "marker_height_px": 0.25},
    "tta": None,
}


def _errors(weights_sha256: str = "0" * 64) -> MeasurementErrors:
    return MeasurementErrors(
        count=ErrorRange(low=-0.3, median=-0.2, high=-0.1),
        ecd_median=ErrorRange(low=0.05, median=0.15, high=0.25),
        percentiles=(10.0, 90.0),
        images=12,
        weights_sha256=weights_sha256,
        settings=dict(SETTINGS),
        protocol="test",
    )


def _bundle(tmp_path: Path, errors: MeasurementErrors | None) -> Path:
    (tmp_path / "configs").mkdir(parents=True)
    metadata = {"version": "0"} if errors is None else {"version": "0", MEASUREMENT_ERRORS_KEY: errors.to_metadata()}
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps(metadata))
    return tmp_path


def test_error_range_takes_the_percentiles_and_median_of_the_finite_errors() -> None:
    errors = [-0.4, -0.3, -0.2, -0.1, 0.0, math.nan]
    spread = ErrorRange.of(errors, (10, 90))
    assert spread.low == pytest.approx(np.percentile(errors[:5], 10))
    assert spread.high == pytest.approx(np.percentile(errors[:5], 90))
    assert spread.median == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="no finite"):
        ErrorRange.of([math.nan])
    with pytest.raises(ValueError, match="-100%"):
        ErrorRange.of([-1.0, 0.1])


def test_true_range_holds_the_truth_exactly_for_the_errors_inside_it() -> None:
    spread = ErrorRange(low=-0.3, median=-0.2, high=-0.1)
    true = 100.0
    for error, inside in ((-0.35, False), (-0.3, True), (-0.2, True), (-0.1, True), (-0.05, False)):
        low, high = spread.true_range(true * (1 + error))
        assert (low - 1e-9 <= true <= high + 1e-9) == inside, error


def test_measurement_errors_round_trip_through_metadata_json() -> None:
    errors = _errors()
    assert MeasurementErrors.from_metadata(json.loads(json.dumps(errors.to_metadata()))) == errors
    assert "+15%" in errors.describe() and "-30% to -10%" in errors.describe()


def test_errors_apply_only_to_the_measured_weights_and_settings(tmp_path) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    bundle = _bundle(tmp_path / "bundle", _errors(sha256_of(str(weights))))
    run = {**SETTINGS, "ckpt_path": str(weights), "particle_separation": {"min_size_px": 10, "marker_height_px": 0.25 + 1e-12}}
    errors, reason = applicable_errors(bundle, run)
    assert errors == _errors(sha256_of(str(weights))) and reason == ""

    other = tmp_path / "other.pt"
    other.write_bytes(b"other weights")
    errors, reason = applicable_errors(bundle, {**run, "ckpt_path": str(other)})
    assert errors is None and "other weights" in reason
    errors, reason = applicable_errors(bundle, {**run, "particle_valley_gain": 4.0})
    assert errors is None and "particle_valley_gain 4.0 (measured with 0.0)" in reason
    errors, reason = applicable_errors(bundle, {**run, "particle_separation": {"min_size_px": 5, "marker_height_px": 0.25}})
    assert errors is None and "particle_separation" in reason
    errors, reason = applicable_errors(_bundle(tmp_path / "bare", None), run)
    assert errors is None and "records no measurement errors" in reason
    assert applicable_errors(None, run)[0] is None


def test_range_columns_are_empty_where_no_range_means_something() -> None:
    row = {"particle_count": 80, "ecd_median": 46.0, "unit": "nm", "flagged_count": 0}
    columns = range_columns(row, _errors())
    assert columns["count_low"] == round(80 / 0.9) and columns["count_high"] == round(80 / 0.7)
    assert columns["ecd_median_low"] == pytest.approx(46.0 / 1.25, abs=0.01)
    assert columns["ecd_median_high"] == pytest.approx(46.0 / 1.05, abs=0.01)
    assert range_columns(row, None) == dict.fromkeys(RANGE_COLUMNS, "")
    assert range_columns({**row, "flagged_count": 1}, _errors()) == dict.fromkeys(RANGE_COLUMNS, "")
    empty = range_columns({**row, "particle_count": 0, "ecd_median": math.nan}, _errors())
    assert empty == dict.fromkeys(RANGE_COLUMNS, "")


def _disc_mask(size: int = 96) -> np.ndarray:
    rows, columns = np.mgrid[:size, :size]
    mask = np.zeros((size, size), dtype=np.uint8)
    for centre in ((24, 24), (24, 70), (70, 47)):
        mask[(rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= 100] = 1
    return mask


@pytest.mark.parametrize("with_errors", [True, False])
def test_summary_csv_fills_the_ranges_of_images_and_pools(tmp_path, with_errors) -> None:
    for stem in ("a", "b"):
        analyse_mask(_disc_mask(), None, 5.0, tmp_path, stem)
    errors = _errors() if with_errors else None
    write_folder_summary(tmp_path, errors)
    with open(tmp_path / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["stem"] for row in rows] == ["a", "b", "pooled"]
    for row in rows:
        assert set(RANGE_COLUMNS) <= set(row)
        if with_errors:
            assert int(row["count_low"]) == round(int(row["particle_count"]) / 0.9)
            assert float(row["ecd_median_high"]) == pytest.approx(float(row["ecd_median"]) / 1.05, abs=0.01)
        else:
            assert all(row[column] == "" for column in RANGE_COLUMNS)
