"""Choose the star-polygon particle step's settings on cross-validated predictions.

    python -m research.polygon_search --dataset_dir ../shared/data/bam-tio2-sem --cv_dir reports/cv/NAME \\
        --config research/configs/star_polygons.json --set intensity=unit   # the configs the CV ran with

Every fold's ``model.pt`` predicts its held-out images through the bundle's evaluate.json
(:func:`research.separation_search.collect_held_out_predictions`, the polygon channels kept whole). Each setting
(an object-probability threshold, an overlap threshold, and outlines from the polygons or from the mask) then
draws the particles (:func:`research.star_polygons.star_polygon_particles`), scored against the 4-connected
true particles.
``polygon_search.csv`` in the CV folder holds one row per setting, best pooled F1 first;
``polygon_selected.json`` the honest estimate: for each fold the setting with the best F1 on the *other* folds'
images, scored on this fold's images, pooled over folds. ``polygon_rays.json`` says how far the predicted rays
are from the true ones at the particles' central pixels, and the object probability on the background.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from research.separation_search import (
    DEFAULT_OBJECTIVE,
    HeldOutPrediction,
    SearchResult,
    SeparationOutcome,
    add_held_out_arguments,
    collect_held_out_predictions,
    grid_settings,
    ranked_result,
    write_per_image,
    write_result,
)
from research.star_polygons import MAX_RAY_PX, POLYGON_CHANNELS_BEFORE_RAYS, StarPolygons, star_polygon_particles

logger = logging.getLogger("research.polygon_search")

SEARCH_NAME = "polygon_search.csv"
SELECTED_NAME = "polygon_selected.json"
RAYS_NAME = "polygon_rays.json"
CENTRAL_OBJECT_PROBABILITY = 0.5
"""True object probability above which a pixel counts as central to its particle when rays are compared."""
GRID: dict[str, tuple[Any, ...]] = {
    "object_threshold": (0.3, 0.4, 0.5, 0.6),
    "overlap_threshold": (0.3, 0.4, 0.5),
    "within_mask": (False, True),
}


def draw_and_match(item: HeldOutPrediction, **setting: Any) -> SeparationOutcome:
    """Draw one held-out prediction's particles with ``setting`` and match them to the true particles."""
    return SeparationOutcome.of(star_polygon_particles(item.probability, item.separation, **setting), item)


def ray_errors(item: HeldOutPrediction) -> dict[str, float]:
    """How far one held-out prediction's rays are from the truth's at the pixels central to a true particle:
    their mean absolute error in px and their correlation, averaged over the ray directions; and the mean
    predicted object probability on the true background, where every pixel above the threshold proposes a
    polygon."""
    truth = StarPolygons()(torch.as_tensor(item.truth[None], dtype=torch.float32)).numpy()
    central = truth[1] > CENTRAL_OBJECT_PROBABILITY
    true_rays = truth[2:, central] * MAX_RAY_PX
    predicted_rays = item.separation[POLYGON_CHANNELS_BEFORE_RAYS:, central] * MAX_RAY_PX
    correlations = [np.corrcoef(true, predicted)[0, 1] for true, predicted in zip(true_rays, predicted_rays)]
    return {
        "ray_error_px": float(np.abs(true_rays - predicted_rays).mean()),
        "ray_correlation": float(np.mean(correlations)),
        "central_pixels": int(central.sum()),
        "background_object_probability": float(item.separation[0][~item.truth].mean()),
    }


def search(predictions: Sequence[HeldOutPrediction], grid: dict[str, tuple[Any, ...]] = GRID) -> SearchResult:
    """Every combination of ``grid``'s settings scored on every prediction, ranked by F1, and with two folds or
    more the setting chosen for each fold on the other folds (:func:`~research.separation_search.ranked_result`)."""
    settings = grid_settings(grid)
    outcomes = [[draw_and_match(item, **setting) for item in predictions] for setting in tqdm(settings, desc="polygon search")]
    return ranked_result(settings, outcomes, [item.fold for item in predictions], (DEFAULT_OBJECTIVE,))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m research.polygon_search", description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    for key in ("object_threshold", "overlap_threshold"):
        parser.add_argument(f"--{key}s", dest=key, type=float, nargs="+", default=GRID[key], help=f"values of {key} to search")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    predictions = collect_held_out_predictions(
        args.dataset_dir, args.cv_dir, args.config, dict(args.set), args.folds, to_map=np.asarray
    )
    rays = {item.name: ray_errors(item) for item in predictions}
    ray_keys = ("ray_error_px", "ray_correlation", "background_object_probability")
    mean_rays = write_per_image(rays, ray_keys, args.cv_dir / RAYS_NAME)
    logger.info(
        "rays at the particles' central pixels, mean over images: error %.2f px, correlation %.3f; object "
        "probability on the background %.3f", *mean_rays.values(),
    )
    grid = {**GRID, "object_threshold": tuple(args.object_threshold), "overlap_threshold": tuple(args.overlap_threshold)}
    write_result(search(predictions, grid), args.cv_dir / SEARCH_NAME, args.cv_dir / SELECTED_NAME, DEFAULT_OBJECTIVE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
