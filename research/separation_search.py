"""Choose the particle-separation parameters on cross-validated predictions.

    python -m research.separation_search --dataset_dir ../shared/data/bam-tio2-sem \\
        --cv_dir reports/cv/residualformer   # plus the --config files the CV ran with, if any
        # --set tta=dihedral: predict as the bundle would with that setting
        # --name tta: write separation_search_tta.csv, keeping earlier searches
        # --workers 2: score the settings in two processes
        # --folds 0 1: only these folds (to compare with a run that trained only those)

Every fold's ``model.pt`` (from ``python -m research.cv run``) predicts its held-out images through
the bundle's evaluate.json, so each image is seen only by a model that never trained on it. Each
combination of a particle threshold, a valley gain (:func:`rformer_monai.particles.deepen_valleys`) and
:func:`rformer_monai.particles.separate_particles` parameters then splits the predicted masks, with and
without the network's separation output where it has one, and is scored against the 4-connected true
particles. ``separation_search.csv`` in the CV folder holds
one row per combination, best pooled F1 first (``separation_search_<name>.csv`` with ``--name``;
``--objectives count_and_median_ecd_error f1`` sorts by the first named instead).

A setting picked as the best of many on the same images flatters itself. ``separation_selected.json``
holds the honest estimate, for each objective: for each fold, the combination with the best objective on
the *other* folds' images, scored on this fold's images, pooled over folds.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from tqdm import tqdm

from research.cv import per_image_spread
from research.targets import offsets_or_separation_map
from rformer_monai.inference.bundle import parse_override
from rformer_monai.metrics.instances import (
    InstanceMatches,
    match_instances,
    pool_matches,
    recall_by_size,
    scores_from_matches,
)
from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD
from rformer_monai.particles import (
    DEFAULT_MARKER_RISE,
    DEFAULT_VALLEY_GAIN,
    particle_step_maps,
    separate_particles,
)
from rformer_monai.particles.labelling import label_particles
from rformer_monai.transforms.io import pixel_size_from_meta
from rformer_monai.workflows.particle_handlers import SEPARATION_KEY

logger = logging.getLogger("research.separation_search")

SEARCH_STEM = "separation_search"
SELECTED_STEM = "separation_selected"
THRESHOLD_KEY = "threshold"  # probability above which a pixel is particle, for the particle step only
VALLEY_GAIN_KEY = "valley_gain"  # how strongly thin valleys are deepened before the threshold
GRID: dict[str, tuple[Any, ...]] = {
    THRESHOLD_KEY: (0.5, 0.6, 0.7, 0.8, 0.9),
    VALLEY_GAIN_KEY: (DEFAULT_VALLEY_GAIN,),
    "min_marker_distance_px": (3,),
    "smoothing_sigma_px": (1.0,),
    "min_size_px": (10,),
    "marker_height_px": (0.1, 0.25, 0.5, 1.0, 2.0),
    "marker_rise": (DEFAULT_MARKER_RISE,),
}
# the command-line option that gives each grid parameter's values, and the values' type
GRID_OPTIONS: dict[str, tuple[str, type]] = {
    THRESHOLD_KEY: ("--thresholds", float),
    VALLEY_GAIN_KEY: ("--valley_gains", float),
    "min_marker_distance_px": ("--min_marker_distances_px", int),
    "smoothing_sigma_px": ("--smoothing_sigmas_px", float),
    "min_size_px": ("--min_sizes_px", int),
    "marker_height_px": ("--marker_heights_px", float),
    "marker_rise": ("--marker_rises", float),
}
# what a search can optimise: pooled scores -> a value to maximise
OBJECTIVES: dict[str, Callable[[Mapping[str, float]], float]] = {
    "f1": lambda scores: scores["f1"],
    "pq": lambda scores: scores["pq"],
    "ks_distance": lambda scores: -scores["ks_distance"],
    "count_error": lambda scores: -abs(scores["count_error"]),
    "median_ecd_error": lambda scores: -abs(scores["median_ecd_error"]),
    "count_and_median_ecd_error": lambda scores: -abs(scores["count_error"]) - abs(scores["median_ecd_error"]),
}
DEFAULT_OBJECTIVE = "f1"
PARTICLES_DICE = "particles_dice"
REPORTED_SCORES = (PARTICLES_DICE, "f1", "precision", "recall", "pq", "mean_iou", "count_error", "median_ecd_error", "ks_distance")


@dataclass
class HeldOutPrediction:
    """One held-out image as the evaluation sees it (data bar cropped): the (H, W) particle probability, the
    (H, W) map of the network's separation outputs where it has them (:func:`~research.targets.offsets_or_separation_map`), and the truth;
    the separation map and the true particles are made once here, not for every setting scored."""

    name: str
    probability: np.ndarray
    separation: np.ndarray | None
    truth: np.ndarray
    pixel_size_nm: float | None
    fold: int = 0
    true_labels: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.true_labels = label_particles(self.truth)


class PredictionCollector:
    """Keep every evaluated sample's probabilities, separation output and true mask (ignite handler);
    ``fold`` is the fold whose model predicts them and ``to_map`` turns the separation channels into what
    is kept (by default the map the particle step cuts along)."""

    def __init__(self, fold: int = 0, to_map: Callable[[np.ndarray], np.ndarray] = offsets_or_separation_map) -> None:
        self.fold = fold
        self.to_map = to_map
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
                    separation=None if separation is None else self.to_map(separation.detach().cpu().float().numpy()),
                    truth=sample["label"].detach().cpu().numpy()[0] > 0,
                    pixel_size_nm=pixel_size_from_meta(meta) if meta else None,
                    fold=self.fold,
                )
            )


def collect_held_out_predictions(
    dataset_dir: str,
    cv_dir: Path,
    extra_configs: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
    folds: Sequence[int] | None = None,
    to_map: Callable[[np.ndarray], np.ndarray] = offsets_or_separation_map,
) -> list[HeldOutPrediction]:
    """Predict every fold's held-out images with that fold's ``model.pt``: the folds found in ``cv_dir``, or
    only ``folds`` (to compare runs that trained some folds on the same images); ``to_map`` is what each
    separation output is kept as (:class:`PredictionCollector`)."""
    from research.cv import fold_evaluation, trained_folds

    predictions = []
    for fold in trained_folds(cv_dir, folds):
        workflow = fold_evaluation(fold, dataset_dir, cv_dir, extra_configs, {**(overrides or {}), "validate#handlers": []})
        evaluator = workflow.parser.get_parsed_content("validate#evaluator")
        collector = PredictionCollector(fold, to_map)
        collector.attach(evaluator)
        evaluator.run()
        workflow.finalize()
        predictions.extend(collector.predictions)
    return predictions


@dataclass
class SeparationOutcome:
    """One image split with one setting: its particle matches and the pixel counts of the particles' Dice."""

    matches: InstanceMatches
    overlap: int
    particle_pixels: int

    @classmethod
    def of(cls, labels: np.ndarray, item: HeldOutPrediction) -> SeparationOutcome:
        """The outcome of predicted particle ``labels`` against ``item``'s true particles."""
        return cls(
            matches=match_instances(labels, item.true_labels, pixel_size_nm=item.pixel_size_nm),
            overlap=int(np.count_nonzero((labels > 0) & item.truth)),
            particle_pixels=int(np.count_nonzero(labels)) + int(np.count_nonzero(item.truth)),
        )


def separate_and_match(
    item: HeldOutPrediction,
    use_separation: bool,
    threshold: float = DEFAULT_THRESHOLD,
    valley_gain: float = DEFAULT_VALLEY_GAIN,
    **separation: Any,
) -> SeparationOutcome:
    """Split one held-out prediction (particles above ``threshold`` once its thin valleys are deepened by
    ``valley_gain``) with the given :func:`separate_particles` arguments and match its particles to the
    true ones; ``use_separation`` cuts the watershed landscape along the network's separation output."""
    probability, cut = particle_step_maps(item.probability, item.separation if use_separation else None, valley_gain)
    labels = separate_particles(probability > threshold, probability=cut, **separation)
    return SeparationOutcome.of(labels, item)


def pooled_scores(outcomes: Iterable[SeparationOutcome]) -> dict[str, float | int]:
    """Instance scores of the outcomes pooled, and the pooled pixel Dice of the particles' union (watershed
    lines and removed specks are background) against the truth, under ``particles_dice``."""
    outcomes = list(outcomes)
    overlap = sum(outcome.overlap for outcome in outcomes)
    particle_pixels = sum(outcome.particle_pixels for outcome in outcomes)
    particles_dice = 2.0 * overlap / particle_pixels if particle_pixels else 1.0
    return {**scores_from_matches(pool_matches(outcome.matches for outcome in outcomes)), PARTICLES_DICE: particles_dice}


def score_separation(
    predictions: Iterable[HeldOutPrediction], use_separation: bool, threshold: float = DEFAULT_THRESHOLD, **separation: Any
) -> dict[str, float | int]:
    """Pooled scores (:func:`pooled_scores`) of the predictions split with one setting
    (:func:`separate_and_match`)."""
    return pooled_scores(separate_and_match(item, use_separation, threshold, **separation) for item in predictions)


@dataclass
class SearchResult:
    """The scored grid, best first, and for each objective the estimate of the setting chosen on other
    folds (empty with one fold)."""

    rows: list[dict[str, Any]]
    selected: dict[str, dict[str, Any]]


def select_on_other_folds(
    settings: list[dict[str, Any]], outcomes: list[list[SeparationOutcome]], folds: list[int], objectives: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """For each objective and each fold, the setting with the best pooled objective on the other folds' images:
    the setting per fold (``per_fold``), its scores on that fold's images (``per_fold_scores``: pooled errors
    can cancel between folds), its outcomes on each fold's images pooled over the folds (``pooled``) and their
    recall by particle size (``recall_by_size``: which sizes are missed, merged or not segmented) and the spread
    of its count and median-ECD errors over the held-out images (``per_image``, :func:`research.cv.per_image_spread`).
    The other folds' scores of every setting are pooled once and serve every objective."""
    members = {fold: [i for i, item_fold in enumerate(folds) if item_fold == fold] for fold in sorted(set(folds))}
    on_other_folds = {}
    for fold in members:
        others = [i for i, item_fold in enumerate(folds) if item_fold != fold]
        on_other_folds[fold] = [pooled_scores(outcomes[s][i] for i in others) for s in range(len(settings))]
    selections = {}
    for objective in objectives:
        value = OBJECTIVES[objective]
        chosen, scores, held_out = {}, {}, []
        for fold, indices in members.items():
            best = max(range(len(settings)), key=lambda s: value(on_other_folds[fold][s]))
            fold_outcomes = [outcomes[best][i] for i in indices]
            chosen[str(fold)] = settings[best]
            scores[str(fold)] = pooled_scores(fold_outcomes)
            held_out.extend(fold_outcomes)
        selections[objective] = {
            "per_fold": chosen,
            "per_fold_scores": scores,
            "pooled": pooled_scores(held_out),
            "recall_by_size": recall_by_size(pool_matches(outcome.matches for outcome in held_out)),
            "per_image": per_image_spread([scores_from_matches(outcome.matches) for outcome in held_out]),
        }
    return selections


# the predictions a worker process scores every setting on, sent once per process
_worker_predictions: list[HeldOutPrediction] = []


def _keep_predictions(predictions: list[HeldOutPrediction]) -> None:
    global _worker_predictions
    _worker_predictions = predictions


def _outcomes_of_setting(setting: dict[str, Any]) -> list[SeparationOutcome]:
    return [separate_and_match(item, **setting) for item in _worker_predictions]


def score_settings(
    predictions: list[HeldOutPrediction], settings: list[dict[str, Any]], workers: int = 1
) -> list[list[SeparationOutcome]]:
    """Every setting's outcomes on every prediction (:func:`separate_and_match`), in ``workers`` processes."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    if workers == 1:
        return [
            [separate_and_match(item, **setting) for item in predictions]
            for setting in tqdm(settings, desc="separation search")
        ]
    with ProcessPoolExecutor(workers, initializer=_keep_predictions, initargs=(predictions,)) as pool:
        return list(tqdm(pool.map(_outcomes_of_setting, settings), total=len(settings), desc="separation search"))


def grid_settings(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values, one setting (name -> value) each."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def search(
    predictions: list[HeldOutPrediction],
    grid: dict[str, tuple[Any, ...]] = GRID,
    workers: int = 1,
    objectives: Sequence[str] = (DEFAULT_OBJECTIVE,),
) -> SearchResult:
    """Score every combination of ``grid`` (with and without the separation output where there is one) in
    ``workers`` processes; rows sorted by the pooled value of the first of ``objectives`` (names in
    :data:`OBJECTIVES`), best first, and a setting chosen on the other folds for each objective. A grid
    without ``threshold`` splits at the evaluation's 0.5.

    Raises:
        ValueError: no objective, or one not known.
    """
    unknown = [objective for objective in objectives if objective not in OBJECTIVES]
    if unknown or not objectives:
        raise ValueError(f"objectives must be among {sorted(OBJECTIVES)}, got {list(objectives)!r}.")
    modes = (False, True) if all(item.separation is not None for item in predictions) else (False,)
    combinations = grid_settings(grid)
    settings = [{"use_separation": mode, **combination} for mode, combination in itertools.product(modes, combinations)]
    outcomes = score_settings(predictions, settings, workers)
    return ranked_result(settings, outcomes, [item.fold for item in predictions], objectives)


def ranked_result(
    settings: list[dict[str, Any]], outcomes: list[list[SeparationOutcome]], folds: list[int], objectives: Sequence[str]
) -> SearchResult:
    """The scored settings as rows of their pooled :data:`REPORTED_SCORES`, best first by the first of
    ``objectives``, and the settings chosen on the other folds (:func:`select_on_other_folds`; none with one
    fold). ``outcomes[s][i]`` is setting ``s`` on the prediction of fold ``folds[i]``."""
    rows = []
    for setting, setting_outcomes in zip(settings, outcomes):
        scores = pooled_scores(setting_outcomes)
        rows.append({**setting, **{key: scores[key] for key in REPORTED_SCORES}})
    rows.sort(key=lambda row: -OBJECTIVES[objectives[0]](row))
    if len(set(folds)) < 2:  # one fold only: nothing to choose on
        return SearchResult(rows, {})
    return SearchResult(rows, select_on_other_folds(settings, outcomes, folds, objectives))


def output_name(stem: str, name: str | None, suffix: str) -> str:
    """``<stem><suffix>`` (``suffix`` with its dot), or ``<stem>_<name><suffix>`` for a named search."""
    return f"{stem}_{name}{suffix}" if name else f"{stem}{suffix}"


def write_search(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write the search's rows as CSV."""
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def log_selected(objective: str, selection: Mapping[str, Any], path: Path) -> None:
    """Log the pooled held-out scores of the settings chosen for ``objective`` on the other folds, written to
    ``path``."""
    pooled = selection["pooled"]
    logger.info(
        "chosen for %s on the other folds, scored on each held-out fold (written to %s): F1 %.3f, PQ %.3f, "
        "count error %+.3f, median ECD error %+.3f",
        objective, path, pooled["f1"], pooled["pq"], pooled["count_error"], pooled["median_ecd_error"],
    )


def write_result(
    result: SearchResult, search_path: Path, selected_path: Path, objective: str = DEFAULT_OBJECTIVE
) -> None:
    """Write the scored grid to ``search_path`` (:func:`write_search`) and, when there is one, the estimate of the
    settings chosen for ``objective`` on the other folds to ``selected_path`` as JSON; log the best row and the
    estimate's pooled scores."""
    write_search(result.rows, search_path)
    logger.info("best %s of %d settings (written to %s): %s", objective, len(result.rows), search_path, result.rows[0])
    if result.selected:
        selected_path.write_text(json.dumps(result.selected[objective], indent=2) + "\n")
        log_selected(objective, result.selected[objective], selected_path)


def write_per_image(per_image: Mapping[str, Mapping[str, float]], keys: Sequence[str], path: Path) -> dict[str, float]:
    """Write one diagnostic record per held-out image and the mean of ``keys`` over the images to ``path`` as JSON
    (``{"mean": ..., "per_image": ...}``); return the means."""
    means = {key: float(np.mean([image[key] for image in per_image.values()])) for key in keys}
    path.write_text(json.dumps({"mean": means, "per_image": per_image}, indent=2) + "\n")
    return means


def add_held_out_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`collect_held_out_predictions`: ``--dataset_dir``, ``--cv_dir``, ``--config``,
    ``--set`` and ``--folds``."""
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--cv_dir", required=True, type=Path)
    parser.add_argument("--config", action="append", default=[], help="the override files the CV was run with")
    parser.add_argument(
        "--set", action="append", default=[], type=parse_override,
        help="key=value override of evaluate.json for the predictions (JSON value), e.g. tta=dihedral",
    )
    parser.add_argument("--folds", type=int, nargs="+", help="only these folds (default: every trained fold)")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m research.separation_search", description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    parser.add_argument("--name", default=None, help="name of this search: its files end in _<name>")
    parser.add_argument("--workers", type=int, default=1, help="processes scoring the settings")
    parser.add_argument(
        "--objectives", nargs="+", choices=sorted(OBJECTIVES), default=[DEFAULT_OBJECTIVE],
        help="what settings are chosen on the other folds for, each in turn (errors: their size); the rows are "
        "sorted by the first",
    )
    for key, (option, value_type) in GRID_OPTIONS.items():
        parser.add_argument(option, dest=key, type=value_type, nargs="+", default=GRID[key], help=f"values of {key} to search")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    grid = {key: tuple(getattr(args, key)) for key in GRID}
    predictions = collect_held_out_predictions(args.dataset_dir, args.cv_dir, args.config, dict(args.set), args.folds)
    result = search(predictions, grid, args.workers, args.objectives)
    path = write_search(result.rows, args.cv_dir / output_name(SEARCH_STEM, args.name, ".csv"))
    logger.info("best %s of %d combinations (written to %s): %s", args.objectives[0], len(result.rows), path, result.rows[0])
    if result.selected:
        selected_path = args.cv_dir / output_name(SELECTED_STEM, args.name, ".json")
        selected_path.write_text(json.dumps(result.selected, indent=2) + "\n")
        for objective, selection in result.selected.items():
            log_selected(objective, selection, selected_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
