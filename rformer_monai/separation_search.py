"""Choose the particle-separation parameters on cross-validated predictions.

    python -m rformer_monai.separation_search --dataset_dir ../shared/data/bam-tio2-sem \\
        --cv_dir reports/cv/residualformer_band2 --config configs/separation_band.json

Every fold's ``model.pt`` (from ``python -m rformer_monai.cv run``) predicts its held-out images through
the bundle's evaluate.json, so each image is seen only by a model that never trained on it. Each
combination of :func:`rformer_monai.analysis.separate_particles` parameters then splits the predicted
masks, with and without the network's separation output where it has one, and is scored against the
4-connected true particles. ``separation_search.csv`` in the CV folder holds one row per combination,
best pooled F1 first.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from tqdm import tqdm

from rformer_monai.analysis.handlers import SEPARATION_KEY
from rformer_monai.analysis.particles import cut_along_separation, separate_particles
from rformer_monai.labelling import label_particles
from rformer_monai.metrics.instances import (
    match_instances,
    pool_matches,
    scores_from_matches,
)
from rformer_monai.transforms.io import pixel_size_from_meta

logger = logging.getLogger("rformer_monai.separation_search")

SEARCH_NAME = "separation_search.csv"
THRESHOLD = 0.5  # the evaluation's particle threshold
GRID: dict[str, tuple[Any, ...]] = {
    "min_marker_distance_px": (2, 3),
    "smoothing_sigma_px": (0.0, 1.0),
    "min_size_px": (10,),
    "marker_height_px": (0.1, 0.25, 0.5, 1.0),
}
PARTICLES_DICE = "particles_dice"
REPORTED_SCORES = (PARTICLES_DICE, "f1", "precision", "recall", "pq", "mean_iou", "count_error", "median_ecd_error", "ks_distance")


@dataclass
class HeldOutPrediction:
    """One held-out image as the evaluation sees it (data bar cropped): probabilities and truth; the true
    particles are labelled once here, not for every setting scored."""

    name: str
    probability: np.ndarray
    separation: np.ndarray | None
    truth: np.ndarray
    pixel_size_nm: float | None
    true_labels: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.true_labels = label_particles(self.truth)


class PredictionCollector:
    """Keep every evaluated sample's probabilities, separation output and true mask (ignite handler)."""

    def __init__(self) -> None:
        self.predictions: list[HeldOutPrediction] = []

    def attach(self, engine: Engine) -> None:
        """Attach to an evaluator."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)

    def _collect(self, engine: Engine) -> None:
        for sample in engine.state.output:
            prediction = sample["pred"]
            separation = sample.get(SEPARATION_KEY)
            meta = prediction.meta if isinstance(prediction, MetaTensor) else {}
            self.predictions.append(
                HeldOutPrediction(
                    name=Path(str(meta.get("filename_or_obj", len(self.predictions)))).stem,
                    probability=prediction.detach().cpu().float().numpy()[0],
                    separation=None if separation is None else separation.detach().cpu().float().numpy()[0],
                    truth=sample["label"].detach().cpu().numpy()[0] > 0,
                    pixel_size_nm=pixel_size_from_meta(meta) if meta else None,
                )
            )


def collect_held_out_predictions(
    dataset_dir: str, cv_dir: Path, extra_configs: Sequence[str] = (), overrides: dict[str, Any] | None = None
) -> list[HeldOutPrediction]:
    """Predict every fold's held-out images with that fold's ``model.pt`` (the folds found in ``cv_dir``)."""
    from rformer_monai.cv import fold_evaluation

    folds = sorted(int(path.parent.name.split("_")[1]) for path in cv_dir.glob("fold_*/model.pt"))
    if not folds:
        raise FileNotFoundError(f"{cv_dir}: no fold_*/model.pt (run 'python -m rformer_monai.cv run' first).")
    collector = PredictionCollector()
    for fold in folds:
        workflow = fold_evaluation(fold, dataset_dir, cv_dir, extra_configs, {**(overrides or {}), "validate#handlers": []})
        evaluator = workflow.parser.get_parsed_content("validate#evaluator")
        collector.attach(evaluator)
        evaluator.run()
        workflow.finalize()
    return collector.predictions


def score_separation(
    predictions: Iterable[HeldOutPrediction], use_separation: bool, **separation: Any
) -> dict[str, float | int]:
    """Pooled instance scores of the predictions split with the given :func:`separate_particles` arguments;
    ``use_separation`` cuts the watershed landscape along the network's separation output. Also the pooled
    pixel Dice of the particles' union (watershed lines and removed specks are background) against the
    truth, under ``particles_dice``."""
    matches, overlap, particle_pixels = [], 0, 0
    for item in predictions:
        cut = cut_along_separation(item.probability, item.separation) if use_separation else None
        labels = separate_particles(item.probability > THRESHOLD, probability=cut, **separation)
        matches.append(match_instances(labels, item.true_labels, pixel_size_nm=item.pixel_size_nm))
        overlap += int(np.count_nonzero((labels > 0) & item.truth))
        particle_pixels += int(np.count_nonzero(labels)) + int(np.count_nonzero(item.truth))
    particles_dice = 2.0 * overlap / particle_pixels if particle_pixels else 1.0
    return {**scores_from_matches(pool_matches(matches)), PARTICLES_DICE: particles_dice}


def search(predictions: list[HeldOutPrediction], grid: dict[str, tuple[Any, ...]] = GRID) -> list[dict[str, Any]]:
    """Score every combination of ``grid`` (with and without the separation output where there is one);
    rows sorted by pooled F1, best first."""
    modes = (False, True) if all(item.separation is not None for item in predictions) else (False,)
    combinations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    rows = []
    for use_separation, separation in tqdm(list(itertools.product(modes, combinations)), desc="separation search"):
        scores = score_separation(predictions, use_separation, **separation)
        rows.append({"use_separation": use_separation, **separation, **{k: scores[k] for k in REPORTED_SCORES}})
    return sorted(rows, key=lambda row: -row["f1"])


def write_search(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write the search's rows as CSV."""
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m rformer_monai.separation_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--cv_dir", required=True, type=Path)
    parser.add_argument("--config", action="append", default=[], help="the override files the CV was run with")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    rows = search(collect_held_out_predictions(args.dataset_dir, args.cv_dir, args.config))
    path = write_search(rows, args.cv_dir / SEARCH_NAME)
    best = rows[0]
    logger.info("best of %d combinations (written to %s): %s", len(rows), path, best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
