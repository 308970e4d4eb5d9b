"""Choose the flow-field particle step's settings on cross-validated predictions.

    python -m research.flow_search --dataset_dir ../shared/data/bam-tio2-sem --cv_dir reports/cv/NAME \\
        --config research/configs/flow_fields.json --set intensity=unit   # the configs the CV ran with

Every fold's ``model.pt`` predicts its held-out images through the bundle's evaluate.json
(:func:`research.separation_search.collect_held_out_predictions`, the two flow channels kept whole). Each
setting (a mask threshold and a flow-error limit, :func:`research.flow_fields.flow_particles`) then draws the
particles, scored against the 4-connected true particles; the flows are followed and checked once per image
and threshold.
``flow_search.csv`` in the CV folder holds one row per setting, best pooled F1 first; ``flow_selected.json`` the
honest estimate: for each fold the setting with the best F1 on the *other* folds' images, scored on this fold's
images, pooled over folds. ``--objective count_and_median_ecd_error`` (or another of
:data:`research.separation_search.OBJECTIVES`) chooses for that instead, into ``flow_search_<objective>.csv``
and ``flow_selected_<objective>.json``. ``flow_errors.json`` says how far the predicted flows are from the true
ones inside the true particles.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from research.flow_fields import (
    DEFAULT_FLOW_ERROR,
    diffusion_flows,
    drop_particles,
    followed_particles,
    particle_flow_errors,
    predicted_flows,
)
from research.separation_search import (
    DEFAULT_OBJECTIVE,
    OBJECTIVES,
    HeldOutPrediction,
    SearchResult,
    SeparationOutcome,
    add_held_out_arguments,
    collect_held_out_predictions,
    grid_settings,
    output_name,
    ranked_result,
    write_per_image,
    write_result,
)

logger = logging.getLogger("research.flow_search")

SEARCH_STEM = "flow_search"
SELECTED_STEM = "flow_selected"
FLOWS_NAME = "flow_errors.json"
FLOW_ERROR_OFF = 8.0
"""A flow-error limit no particle exceeds (flows with components in [-1, 1] differ by at most 8 squared): the
check off."""
GRID: dict[str, tuple[float, ...]] = {
    "threshold": (0.3, 0.4, 0.5, 0.6),
    "flow_error": (DEFAULT_FLOW_ERROR, 2 * DEFAULT_FLOW_ERROR, FLOW_ERROR_OFF),
}


def flow_errors(item: HeldOutPrediction) -> dict[str, float]:
    """How far one held-out prediction's flows are from the true particles' unit flows inside them: their mean
    squared difference (the quantity the flow-error check limits) and the mean cosine of the angle between them
    where the true flow is not zero."""
    true_flows = diffusion_flows(item.true_labels)
    predicted = predicted_flows(item.separation)
    inside = item.true_labels > 0
    error = ((predicted[:, inside] - true_flows[:, inside]) ** 2).sum(axis=0)
    flowing = inside & (np.linalg.norm(true_flows, axis=0) > 0.5)  # unit flows; not the centres, where they vanish
    true_flowing, predicted_flowing = true_flows[:, flowing], predicted[:, flowing]
    lengths = np.maximum(np.linalg.norm(predicted_flowing, axis=0), np.finfo(np.float32).eps)
    return {
        "flow_error": float(error.mean()),
        "flow_cosine": float(((predicted_flowing * true_flowing).sum(axis=0) / lengths).mean()),
        "particle_pixels": int(inside.sum()),
    }


def search(
    predictions: Sequence[HeldOutPrediction],
    grid: dict[str, tuple[float, ...]] = GRID,
    objective: str = DEFAULT_OBJECTIVE,
) -> SearchResult:
    """Every combination of ``grid``'s thresholds and flow-error limits scored on every prediction, ranked by
    ``objective`` (a name in :data:`~research.separation_search.OBJECTIVES`), and with two folds or more the
    setting chosen for it for each fold on the other folds (:func:`~research.separation_search.ranked_result`)."""
    followed = {}  # (prediction, threshold) -> the particles the flows gather and each one's flow error
    for threshold in tqdm(grid["threshold"], desc="flow following"):
        for index, item in enumerate(predictions):
            labels = followed_particles(item.probability, item.separation, threshold)
            followed[index, threshold] = labels, particle_flow_errors(labels, item.separation)
    settings = grid_settings(grid)
    outcomes = [
        [
            SeparationOutcome.of(drop_particles(*followed[index, setting["threshold"]], setting["flow_error"]), item)
            for index, item in enumerate(predictions)
        ]
        for setting in tqdm(settings, desc="flow search")
    ]
    return ranked_result(settings, outcomes, [item.fold for item in predictions], (objective,))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m research.flow_search", description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    for key in GRID:
        parser.add_argument(
            f"--{key}s", dest=key, type=float, nargs="+", default=GRID[key], help=f"values of {key} to search"
        )
    parser.add_argument(
        "--objective",
        choices=sorted(OBJECTIVES),
        default=DEFAULT_OBJECTIVE,
        help="what the settings are ranked and chosen on the other folds for (errors: their size)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    predictions = collect_held_out_predictions(
        args.dataset_dir, args.cv_dir, args.config, dict(args.set), args.folds, to_map=np.asarray
    )
    errors = {item.name: flow_errors(item) for item in predictions}
    mean_errors = write_per_image(errors, ("flow_error", "flow_cosine"), args.cv_dir / FLOWS_NAME)
    logger.info("flows inside the true particles, mean over images: error %.3f, cosine %.3f", *mean_errors.values())
    result = search(predictions, {key: tuple(getattr(args, key)) for key in GRID}, args.objective)
    name = None if args.objective == DEFAULT_OBJECTIVE else args.objective
    write_result(
        result,
        args.cv_dir / output_name(SEARCH_STEM, name, ".csv"),
        args.cv_dir / output_name(SELECTED_STEM, name, ".json"),
        args.objective,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
