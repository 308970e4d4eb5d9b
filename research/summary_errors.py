"""How wrong ``summary.csv``'s particle count and median ECD are on cross-validation's held-out images, and the
``measurement_errors`` block of the bundle's ``metadata.json`` that turns those errors into the summary's ranges
(:mod:`rformer_monai.reports.uncertainty`).

Every fold's model analyses its held-out micrographs with the bundle's own analysis (``inference.json`` as it
is, so every setting the bundle uses). The truth is the manual mask's 4-connected particles of at least the
particle step's smallest size, in the same rows (above the data bar the analysis found), measured into the same
summary row. Relative error = reported / true - 1, per image.

    python -m research.summary_errors --dataset_dir $DATA --cv_dir reports/cv/shipped50 \\
        --weights bundles/residualformer_sem/models/model.pt \\
        --metadata bundles/residualformer_sem/configs/metadata.json
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from research.cv import BUNDLE_CONFIGS, fold_folder, trained_folds
from rformer_monai.api import Segmenter
from rformer_monai.data.discovery import discover_pairs
from rformer_monai.files import sha256_of
from rformer_monai.particles.imagej import PixelSize, particle_table
from rformer_monai.particles.labelling import label_particles, remove_small_particles
from rformer_monai.reports.summary import IMAGE_RECORD_SUFFIX, image_summary
from rformer_monai.reports.uncertainty import (
    DEFAULT_PERCENTILES,
    MEASURED_SETTINGS,
    MEASUREMENT_ERRORS_KEY,
    REPORTED,
    ErrorRange,
    MeasurementErrors,
)
from rformer_monai.transforms.io import read_micrograph

logger = logging.getLogger(__name__)

RESULTS_NAME = "summary_errors.json"
RUN_FOLDER = "summary_run"
METADATA_INDENT = 4


def true_summary(mask: np.ndarray, record: Mapping[str, Any], min_size_px: int) -> dict[str, Any]:
    """The summary row of a manual mask: its 4-connected particles of at least ``min_size_px`` in the rows the
    analysis kept (``record``'s ``height_px - data_bar_rows``), measured with the record's pixel size."""
    sample_rows = int(record["height_px"]) - int(record["data_bar_rows"])
    labels = remove_small_particles(label_particles(np.asarray(mask)[:sample_rows]), min_size_px)
    table = particle_table(labels, PixelSize(record["pixel_size_nm"], str(record["pixel_size_source"])))
    return image_summary(table, record)


def image_errors(reported: Mapping[str, Any], true: Mapping[str, Any]) -> dict[str, float]:
    """Relative errors ``reported / true - 1`` of the summary columns in :data:`REPORTED` (NaN where the truth is 0)."""
    errors = {}
    for name, column in REPORTED.items():
        truth = float(true[column])
        errors[name] = float(reported[column]) / truth - 1.0 if truth > 0 else float("nan")
    return errors


def measured_settings(segmenter: Segmenter) -> dict[str, Any]:
    """The :data:`MEASURED_SETTINGS` of a segmenter's config, as JSON values."""
    settings = segmenter.parser.get_parsed_content("recorded_settings")
    return json.loads(json.dumps({name: settings[name] for name in MEASURED_SETTINGS}, default=str))


def fold_errors(fold_dir: Path, masks: Mapping[str, str], device: str = "cpu") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Analyse a fold's held-out images with its model (outputs in ``fold_dir/summary_run``) and return each
    image's reported and true count and median ECD with the errors, and the settings used."""
    held_out = json.loads((fold_dir / "split.json").read_text(encoding="utf-8"))["held_out_images"]
    segmenter = Segmenter(BUNDLE_CONFIGS.parent, weights=fold_dir / "model.pt", device=device)
    min_size_px = int(segmenter.parser.get_parsed_content("particle_separation")["min_size_px"])
    output_dir = fold_dir / RUN_FOLDER
    rows = []
    for name in held_out:
        image = next(path for path in masks if Path(path).name == name)
        reported = segmenter.analysis(image, output_dir)
        record = json.loads((output_dir / f"{reported['stem']}{IMAGE_RECORD_SUFFIX}").read_text(encoding="utf-8"))
        true = true_summary(read_micrograph(masks[image]).array, record, min_size_px)
        row = {"image": name, "fold": fold_dir.name, "warning": reported["warning"]}
        for column in REPORTED.values():
            row[f"reported_{column}"], row[f"true_{column}"] = reported[column], true[column]
        rows.append({**row, **{f"{key}_error": value for key, value in image_errors(reported, true).items()}})
        logger.info("%s %s: count error %+.1f %%, median-ECD error %+.1f %%", fold_dir.name, name,
                    100 * rows[-1]["count_error"], 100 * rows[-1]["ecd_median_error"])
    return rows, measured_settings(segmenter)


def measurement_errors(
    rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], weights_sha256: str, protocol: str,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> MeasurementErrors:
    """The metadata block from the per-image rows of :func:`fold_errors`."""
    return MeasurementErrors(
        count=ErrorRange.of([row["count_error"] for row in rows], percentiles),
        ecd_median=ErrorRange.of([row["ecd_median_error"] for row in rows], percentiles),
        percentiles=tuple(float(percent) for percent in sorted(percentiles)),
        images=len(rows),
        weights_sha256=weights_sha256,
        settings=dict(settings),
        protocol=protocol,
    )


def write_metadata_block(metadata_path: Path, errors: MeasurementErrors) -> None:
    """Set ``metadata.json``'s :data:`MEASUREMENT_ERRORS_KEY` block, the rest of the file kept as it is."""
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    metadata[MEASUREMENT_ERRORS_KEY] = errors.to_metadata()
    metadata_path.write_text(json.dumps(metadata, indent=METADATA_INDENT, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--cv_dir", type=Path, required=True, help="a research.cv run folder with fold_*/model.pt")
    parser.add_argument("--folds", type=int, nargs="*", help="only these folds (default: every trained one)")
    parser.add_argument("--weights", type=Path, required=True, help="the weights the errors describe (their recipe's)")
    parser.add_argument("--metadata", type=Path, help="write the block into this metadata.json")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    masks = {pair["image"]: pair["label"] for pair in discover_pairs(args.dataset_dir)}
    folds = trained_folds(args.cv_dir, args.folds)
    rows, settings = [], {}
    for fold in folds:
        fold_rows, settings = fold_errors(fold_folder(args.cv_dir, fold), masks, args.device)
        rows.extend(fold_rows)
    protocol = (
        f"{len(rows)} held-out images of {len(folds)} cross-validation folds ({args.cv_dir.name}) over the "
        f"{len(masks)} micrographs of {Path(args.dataset_dir).resolve().name}, each fold trained by the weights' "
        "recipe without its held-out images; truth: the manual masks' 4-connected particles of at least the "
        "particle step's smallest size (research/summary_errors.py)"
    )
    errors = measurement_errors(rows, settings, sha256_of(str(args.weights)), protocol)
    results = {"images": rows, MEASUREMENT_ERRORS_KEY: errors.to_metadata()}
    (args.cv_dir / RESULTS_NAME).write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(errors.to_metadata(), indent=2))
    print(errors.describe())
    if args.metadata is not None:
        write_metadata_block(args.metadata, errors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
