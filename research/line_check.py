"""Score cross-validated predictions on the true separation lines: does the mask itself keep touching
particles apart, or is it left to the watershed?

    python -m research.line_check --dataset_dir ../shared/data/bam-tio2-sem \\
        --cv_dir reports/cv/residualformer   # plus the --config files the CV ran with, if any
        # --folds 1: only these folds; --thresholds 0.7 0.9: the particle thresholds to count pairs at

Every fold's ``model.pt`` predicts its held-out images, as in ``research.separation_search``; the lines
between the true masks' touching particles are numbered by pair
(:func:`rformer_monai.transforms.separation_line_pairs`) and scored with
:func:`research.lines.line_scores`, per fold and pooled. ``line_check.json`` (or
``line_check_<name>.json``) in the CV folder holds the scores.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from research.lines import LineProbabilities, line_probabilities, line_scores
from research.separation_search import add_held_out_arguments, collect_held_out_predictions, output_name

logger = logging.getLogger("research.line_check")

LINE_CHECK_STEM = "line_check"
DEFAULT_THRESHOLDS = (0.7, 0.8, 0.9)  # the particle thresholds of the README's separation searches


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float | int]]:
    """Command-line entry point (see the module docstring); returns the scores per fold and ``pooled``."""
    parser = argparse.ArgumentParser(prog="python -m research.line_check", description=__doc__.split("\n\n")[0])
    add_held_out_arguments(parser)
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--name", default=None, help="name of this check: its file ends in _<name>")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    predictions = collect_held_out_predictions(args.dataset_dir, args.cv_dir, args.config, dict(args.set), args.folds)
    lines_by_fold: dict[int, list[LineProbabilities]] = {}
    for prediction in predictions:
        lines_by_fold.setdefault(prediction.fold, []).append(line_probabilities(prediction.probability, prediction.truth))
    scores = {f"fold_{fold}": line_scores(lines, args.thresholds) for fold, lines in sorted(lines_by_fold.items())}
    scores["pooled"] = line_scores((line for lines in lines_by_fold.values() for line in lines), args.thresholds)
    path = args.cv_dir / output_name(LINE_CHECK_STEM, args.name, ".json")
    path.write_text(json.dumps(scores, indent=2) + "\n")
    logger.info("scores on the true separation lines (written to %s): %s", path, scores["pooled"])
    return scores


if __name__ == "__main__":
    main()
