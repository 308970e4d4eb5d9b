"""Check the particle step alone, before any network is judged: how well can it separate touching particles?

    python -m research.separation_check --dataset_dir ../shared/data/bam-tio2-sem --output reports/separation_check.json

The true masks separate touching particles by one-pixel background lines. Each mask (data bar cropped) has
those lines closed (a 3x3 binary closing), as a network that does not draw them would predict it, and is
split again by :func:`rformer_monai.particles.separate_particles`, scored against its 4-connected true
particles (IoU > 0.5), pooled over the images. Guides, each a perfect version of what a network could add:

- ``watershed``: the closed mask alone (what the watershed recovers by itself);
- ``band``: the landscape cut along the true separation band (a perfect band output);
- ``relative_border``: the landscape cut by the true relative border proximity (a perfect distance-map
  output, :class:`rformer_monai.transforms.RelativeBorderProximity`);
- ``offsets``: the landscape cut along the boundaries of the true centre offsets (perfect offset outputs,
  :class:`research.targets.CentreOffsets` and :func:`research.targets.offset_boundaries`);
- ``lines_kept``: the true mask with its lines (a network that draws every line).

It also counts the true particles under the particle step's smallest size (slivers between the lines, which
no prediction keeps) and gives the true median ECD with and without them.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from research.targets import CentreOffsets, SeparationBand, offsets_or_separation_map
from rformer_monai.data.discovery import discover_pairs
from rformer_monai.metrics.instances import InstanceMatches, match_instances, pool_matches, scores_from_matches
from rformer_monai.particles import (
    DEFAULT_MARKER_HEIGHT_PX,
    DEFAULT_MIN_MARKER_DISTANCE_PX,
    DEFAULT_MIN_SIZE_PX,
    DEFAULT_SMOOTHING_SIGMA_PX,
    cut_along_separation,
    separate_particles,
)
from rformer_monai.particles.labelling import equivalent_circular_diameter, label_particles
from rformer_monai.transforms.array import RelativeBorderProximity
from rformer_monai.transforms.pipelines import LABEL_KEY, validation_transforms

logger = logging.getLogger("research.separation_check")

CLOSING_STRUCTURE = np.ones((3, 3), dtype=bool)  # closes the one-pixel lines, straight or diagonal
GUIDES = ("watershed", "band", "relative_border", "offsets", "lines_kept")
GUIDE_TARGETS = {"band": SeparationBand, "relative_border": RelativeBorderProximity, "offsets": CentreOffsets}
REPORTED_SCORES = ("f1", "precision", "recall", "pq", "count_error", "median_ecd_error", "fn_merged", "true_count")


def close_separation_lines(truth: np.ndarray) -> np.ndarray:
    """The (H, W) bool mask with the one-pixel lines between touching particles filled (a 3x3 binary
    closing, never removing a particle pixel)."""
    truth = np.asarray(truth, dtype=bool)
    return truth | ndi.binary_closing(truth, structure=CLOSING_STRUCTURE)


def _separation_channels(target: Callable, truth: np.ndarray) -> np.ndarray:
    return np.asarray(target(truth[None].astype(np.float32))[1:])


def split_with_guide(truth: np.ndarray, guide: str, **separation) -> np.ndarray:
    """Instance labels of the particle step run on ``truth`` with its lines closed, guided by ``guide`` (one of
    :data:`GUIDES`) derived from the true mask; ``separation``: :func:`separate_particles` arguments."""
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}.")
    if guide == "lines_kept":
        return separate_particles(truth, **separation)
    closed = close_separation_lines(truth)
    if guide == "watershed":
        return separate_particles(closed, **separation)
    guide_map = offsets_or_separation_map(_separation_channels(GUIDE_TARGETS[guide](), truth))
    landscape = cut_along_separation(np.ones(truth.shape), guide_map)
    return separate_particles(closed, probability=landscape, **separation)


def check_separation(
    truths: Sequence[np.ndarray], guides: Sequence[str] = GUIDES, progress: bool = True, **separation
) -> dict[str, dict[str, float | int]]:
    """Pooled instance scores (:func:`~rformer_monai.metrics.instances.scores_from_matches`) per guide over
    the true (H, W) masks ``truths``."""
    matches: dict[str, list[InstanceMatches]] = {guide: [] for guide in guides}
    for truth in tqdm(truths, desc="separation check", unit="image", disable=not progress):
        truth = np.asarray(truth, dtype=bool)
        true_labels = label_particles(truth)
        for guide in guides:
            matches[guide].append(match_instances(split_with_guide(truth, guide, **separation), true_labels))
    return {guide: scores_from_matches(pool_matches(matches[guide])) for guide in guides}


def true_particle_sizes(truths: Sequence[np.ndarray], min_size_px: int = DEFAULT_MIN_SIZE_PX) -> dict[str, float | int]:
    """How many of the true particles (4-connected) of the (H, W) masks ``truths`` are under ``min_size_px``,
    and their median ECD in px with and without them."""
    areas = np.concatenate([np.bincount(label_particles(np.asarray(truth, dtype=bool)).ravel())[1:] for truth in truths])
    measurable = areas >= min_size_px
    median = float(np.median(equivalent_circular_diameter(areas))) if areas.size else float("nan")
    measurable_median = float(np.median(equivalent_circular_diameter(areas[measurable]))) if measurable.any() else float("nan")
    return {
        "true_count": int(areas.size),
        "under_min_size": int(areas.size - measurable.sum()),
        "min_size_px": int(min_size_px),
        "median_ecd_px": median,
        "measurable_median_ecd_px": measurable_median,
    }


def load_true_masks(dataset_dir: str) -> list[np.ndarray]:
    """The dataset's binary masks, data bar cropped as the evaluation crops it."""
    load = validation_transforms(intensity="none")
    return [np.asarray(load(pair)[LABEL_KEY])[0] > 0 for pair in discover_pairs(dataset_dir)]


def format_table(scores: dict[str, dict[str, float | int]]) -> str:
    """A markdown table: one row per guide, the :data:`REPORTED_SCORES` as columns."""
    lines = ["| guide | " + " | ".join(REPORTED_SCORES) + " |", "|---" * (len(REPORTED_SCORES) + 1) + "|"]
    for guide, row in scores.items():
        cells = [f"{row[name]:.3f}" if isinstance(row[name], float) else str(row[name]) for name in REPORTED_SCORES]
        lines.append(f"| {guide} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float | int]]:
    """Command line: score every guide on a dataset's true masks, log a table and write the scores as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", required=True, help="a folder of micrographs with masks (BAM layout)")
    parser.add_argument("--output", default="reports/separation_check.json", help="JSON file of the scores")
    parser.add_argument("--marker_height_px", type=float, default=DEFAULT_MARKER_HEIGHT_PX)
    parser.add_argument("--min_marker_distance_px", type=int, default=DEFAULT_MIN_MARKER_DISTANCE_PX)
    parser.add_argument("--smoothing_sigma_px", type=float, default=DEFAULT_SMOOTHING_SIGMA_PX)
    parser.add_argument("--min_size_px", type=int, default=DEFAULT_MIN_SIZE_PX)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    separation = {
        "marker_height_px": args.marker_height_px,
        "min_marker_distance_px": args.min_marker_distance_px,
        "smoothing_sigma_px": args.smoothing_sigma_px,
        "min_size_px": args.min_size_px,
    }
    truths = load_true_masks(args.dataset_dir)
    scores = check_separation(truths, **separation)
    sizes = true_particle_sizes(truths, args.min_size_px)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"images": len(truths), "separation": separation, "scores": scores, "true_particles": sizes}
    output.write_text(json.dumps(report, indent=2))
    logger.info("%d masks, lines closed then separated again:\n%s\nscores in %s", len(truths), format_table(scores), output)
    logger.info(
        "%d of %d true particles are under %d px; true median ECD %.2f px, %.2f px without them",
        sizes["under_min_size"], sizes["true_count"], sizes["min_size_px"], sizes["median_ecd_px"],
        sizes["measurable_median_ecd_px"],
    )
    return scores


if __name__ == "__main__":
    main()
