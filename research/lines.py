"""How a predicted probability map treats the one-pixel lines that separate touching true particles.

A pair of touching particles stays apart in a thresholded mask only if no pixel of the line between them
rises above the threshold: one bright pixel joins them, however dark the rest of the line. These scores
say how often the mask alone keeps pairs apart, and so how much is left to the watershed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rformer_monai.transforms.array import separation_line_pairs


@dataclass
class LineProbabilities:
    """The probabilities on one image's true separation lines."""

    on_lines: np.ndarray  # the probability of every line pixel
    pair_maxima: np.ndarray  # the highest probability on each touching pair's line


def line_probabilities(probability: np.ndarray, truth: np.ndarray) -> LineProbabilities:
    """The probabilities on the lines that separate the 4-connected particles of the (H, W) 0/1 ``truth``.

    Args:
        probability: (H, W) particle probability of the same image.
        truth: (H, W) true mask whose touching particles are split by one-pixel lines.
    """
    if probability.shape != truth.shape:
        raise ValueError(f"probability {probability.shape} and truth {truth.shape} differ in shape.")
    pairs = separation_line_pairs(truth > 0)
    on_line = pairs > 0
    on_lines = probability[on_line].astype(np.float64)
    pair_maxima = np.full(int(pairs.max()), -np.inf)
    np.maximum.at(pair_maxima, pairs[on_line] - 1, on_lines)
    return LineProbabilities(on_lines=on_lines, pair_maxima=pair_maxima)


def line_scores(images: Iterable[LineProbabilities], thresholds: Sequence[float]) -> dict[str, float | int]:
    """Pool images' :class:`LineProbabilities`: the number of touching pairs, the median probability on the
    line pixels and of each pair's brightest line pixel, and for each threshold the share of pairs whose
    line stays at or below it (``kept_apart_<threshold>``: pairs the thresholded mask itself keeps apart)."""
    images = list(images)
    if not any(image.pair_maxima.size for image in images):
        raise ValueError("no touching particles in these masks: nothing to score.")
    on_lines = np.concatenate([image.on_lines for image in images])
    pair_maxima = np.concatenate([image.pair_maxima for image in images])
    scores: dict[str, float | int] = {
        "pairs": int(pair_maxima.size),
        "line_pixels": int(on_lines.size),
        "median_line_probability": float(np.median(on_lines)),
        "median_pair_maximum": float(np.median(pair_maxima)),
    }
    for threshold in thresholds:
        scores[f"kept_apart_{threshold:g}"] = float(np.mean(pair_maxima <= threshold))
    return scores
