"""Does a fold's network keep the particles of its own training images apart? Capacity against generalisation.

    python -m research.fit_check --dataset_dir $DATA --cv_dir reports/cv/NAME [--config X.json] [--set K=V] [--folds 0 1]

Each fold's ``model.pt`` is scored by the bundle's evaluation (the fold's own particle step) on the images it
trained on; ``fold_k/on_training/instance_metrics.json`` sits beside the held-out ``fold_k/instance_metrics.json``.
When the training images merge as often as the held-out ones, the limit is the network, its schedule or its
resolution; when they do not, it is generalisation. ``worst_merges.png`` in the CV folder draws the held-out
predicted particles that swallowed the most true ones (truth green, prediction red).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events
from skimage.segmentation import find_boundaries

from research.cv import fold_evaluation, fold_folder, trained_folds
from research.separation_search import add_held_out_arguments
from rformer_monai.particles.labelling import label_particles
from rformer_monai.reports.figures import save_figure
from rformer_monai.workflows.particle_handlers import INSTANCE_METRICS_NAME, InstanceEvaluationHandler

logger = logging.getLogger("research.fit_check")

TRAINING_SCORES_DIR = "on_training"
WORST_MERGES_NAME = "worst_merges.png"
WORST_MERGES_SHOWN = 5
INSIDE_FRACTION = 0.5
"""A true particle counts as swallowed by a predicted one that holds more than this fraction of its pixels."""
MERGE_MARGIN_PX = 12
"""Pixels shown around a merged particle's bounding box."""
SCORES = ("f1", "pq", "count_error", "fn_merged", "fn_unsegmented", "true_count")


@dataclass
class Merge:
    """A predicted particle that swallowed ``swallowed`` true particles, with the picture around it."""

    swallowed: int
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    name: str


def merges_of(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray, name: str) -> list[Merge]:
    """The predicted particles of one image that hold more than half of two or more true particles."""
    true_labels = label_particles(truth)
    count = int(true_labels.max(initial=0))
    if count == 0 or predicted.max() == 0:
        return []
    width = int(predicted.max()) + 1
    pairs = np.bincount(true_labels.ravel() * width + predicted.ravel(), minlength=(count + 1) * width)
    pairs = pairs.reshape(count + 1, width)
    areas = pairs.sum(axis=1)
    owner = pairs[1:, 1:].argmax(axis=1) + 1
    held = pairs[1:, 1:].max(axis=1) > INSIDE_FRACTION * areas[1:]
    swallowed = np.bincount(owner[held], minlength=width)
    merges = []
    for particle in np.flatnonzero(swallowed >= 2):
        rows, columns = np.nonzero(predicted == particle)
        top, left = max(rows.min() - MERGE_MARGIN_PX, 0), max(columns.min() - MERGE_MARGIN_PX, 0)
        window = np.s_[top : rows.max() + MERGE_MARGIN_PX + 1, left : columns.max() + MERGE_MARGIN_PX + 1]
        merges.append(Merge(int(swallowed[particle]), image[window], true_labels[window], predicted[window] == particle, name))
    return merges


class MergeCollector:
    """Keeps the :data:`WORST_MERGES_SHOWN` held-out merges that swallowed the most true particles, found with
    the evaluation's own particle step (``instances.particles``)."""

    def __init__(self, instances: InstanceEvaluationHandler) -> None:
        self.instances = instances
        self.merges: list[Merge] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)

    def _collect(self, engine: Engine) -> None:
        for sample in engine.state.output:
            image = sample["image"].detach().cpu().float().numpy()[0]
            truth = sample["label"].detach().cpu().numpy()[0] > 0
            name = Path(str(sample["pred"].meta.get("filename_or_obj", ""))).stem
            self.merges.extend(merges_of(image, self.instances.particles(sample), truth, name))
            self.merges = sorted(self.merges, key=lambda merge: -merge.swallowed)[:WORST_MERGES_SHOWN]


def draw_merges(merges: Sequence[Merge], path: Path) -> Path:
    """One panel per merge: the image, the true particles' outlines in green, the merged prediction's in red."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2 * max(len(merges), 1), 3.4))
    axes = figure.subplots(1, max(len(merges), 1), squeeze=False)
    for axis, merge in zip(axes[0], merges):
        axis.imshow(merge.image, cmap="gray")
        for outline, colour in ((find_boundaries(merge.truth), (0.1, 0.9, 0.1)), (find_boundaries(merge.prediction), (1.0, 0.1, 0.1))):
            axis.imshow(np.dstack([np.broadcast_to(c, outline.shape) for c in colour] + [outline.astype(float)]))
        axis.set_title(f"{merge.name}: {merge.swallowed} in one", fontsize=9)
    for axis in axes[0]:
        axis.axis("off")
    return save_figure(figure, path)


def check_fold(fold: int, dataset_dir: str, cv_dir: Path, configs: Sequence[str], overrides: dict[str, Any]) -> dict:
    """Score fold ``fold``'s model on its training images; return its training and held-out scores."""
    fold_dir = fold_folder(cv_dir, fold)
    workflow = fold_evaluation(
        fold, dataset_dir, cv_dir, configs,
        {**overrides, "validate#dataset#data": "$@datalists['training']", "eval_dir": str(fold_dir / TRAINING_SCORES_DIR),
         "validate#handlers": ["@validate#instance_handler"]},
    )
    workflow.run()
    workflow.finalize()
    on_training = json.loads((fold_dir / TRAINING_SCORES_DIR / INSTANCE_METRICS_NAME).read_text())["pooled"]
    held_out = json.loads((fold_dir / INSTANCE_METRICS_NAME).read_text())["pooled"]
    return {"fold": fold, "training": {k: on_training[k] for k in SCORES}, "held_out": {k: held_out[k] for k in SCORES}}


def collect_worst_merges(dataset_dir: str, cv_dir: Path, configs: Sequence[str], overrides: dict[str, Any], folds: Sequence[int]) -> list[Merge]:
    """The worst merges over the held-out images of ``folds``."""
    merges: list[Merge] = []
    for fold in folds:
        workflow = fold_evaluation(fold, dataset_dir, cv_dir, configs, {**overrides, "validate#handlers": []})
        evaluator = workflow.parser.get_parsed_content("validate#evaluator")
        collector = MergeCollector(workflow.parser.get_parsed_content("validate#instance_handler"))
        collector.attach(evaluator)
        evaluator.run()
        workflow.finalize()
        merges = sorted(merges + collector.merges, key=lambda merge: -merge.swallowed)[:WORST_MERGES_SHOWN]
    return merges


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m research.fit_check", description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    folds = trained_folds(args.cv_dir, args.folds)
    overrides = dict(args.set)
    rows = [check_fold(fold, args.dataset_dir, args.cv_dir, args.config, overrides) for fold in folds]
    (args.cv_dir / "fit_check.json").write_text(json.dumps(rows, indent=2, default=float))
    draw_merges(collect_worst_merges(args.dataset_dir, args.cv_dir, args.config, overrides, folds), args.cv_dir / WORST_MERGES_NAME)
    print("| fold | F1 training | F1 held out | PQ training | PQ held out | count training | count held out | merged share of misses, training / held out |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        training, held = row["training"], row["held_out"]
        shares = [s["fn_merged"] / max(s["fn_merged"] + s["fn_unsegmented"], 1) for s in (training, held)]
        print(f"| {row['fold']} | {training['f1']:.3f} | {held['f1']:.3f} | {training['pq']:.3f} | {held['pq']:.3f} | "
              f"{training['count_error']:+.1%} | {held['count_error']:+.1%} | {shares[0]:.0%} / {shares[1]:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
