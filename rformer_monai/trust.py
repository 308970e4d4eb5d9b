"""Trust checks: does a prediction look like one on the kind of micrograph the weights were trained on?

Three statistics of one image, each compared with the range seen on the 30 BAM TiO2 SEM images (the
training set of the shipped weights) widened by a margin:

- the predicted foreground fraction (particles cover 1.7 % to 32 % of a BAM micrograph; a background
  segmented as particles, e.g. dark particles read as bright, covers most of the image);
- the mean probability margin ``|2 p - 1|`` (how decided the network is, 1 everywhere at best);
- the contrast score of the input as the network saw it (:func:`~rformer_monai.transforms.contrast.
  contrast_score`: clearly positive for bright particles on a dark film; near 0 for noise, a constant or
  an image without particles; negative where the particles are dark and the contrast was forced wrong).

An image outside any range gets a warning: a short reason text, empty when all is fine.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "MAX_FOREGROUND_FRACTION",
    "MIN_CONTRAST_SCORE",
    "MIN_FOREGROUND_FRACTION",
    "MIN_MEAN_MARGIN",
    "TrustTally",
    "trust_statistics",
    "trust_warning",
]

logger = logging.getLogger(__name__)

# Predicted foreground fraction: the BAM masks cover 0.017..0.319 of the sample area (the shipped weights'
# predictions on them 0.017..0.327). Below a third of the smallest, the image shows (almost) no particles;
# above 0.5 the particles would be the majority, the background of the image, which the contrast decision
# assumes they are not: a wrong polarity segments 0.6..0.9 of an inverted BAM image.
MIN_FOREGROUND_FRACTION = 0.005
MAX_FOREGROUND_FRACTION = 0.5
# Mean probability margin |2p - 1| over the sample area: 0.938..0.996 on the BAM images with the shipped weights
# (lowest on the most crowded, 33 % particles: more boundary; 0.921 with flatten_background), 0.93..0.94 on synthetic micrographs of 30 %
# coverage; 0.85..0.86 on a synthetic dark-particle image forced to bright, 0.38..0.84 on noise images.
# 0.9 sits below every micrograph like the training images, above those.
MIN_MEAN_MARGIN = 0.9
# Contrast score of the network's input (1 % quantile skewness, see rformer_monai.transforms.contrast):
# 0.78..0.89 on the BAM images and 0.79..0.85 on the synthetic micrographs; half the lowest BAM score.
MIN_CONTRAST_SCORE = 0.4


class TrustTally:
    """The sums behind :func:`trust_statistics`, added up over the parts of a probability map read one at a time
    (the blocks of a large micrograph).

    Args:
        threshold: probability above which a pixel is particle.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.pixels = 0
        self.foreground = 0
        self.margin = 0.0

    def add(self, probability: np.ndarray) -> TrustTally:
        """Add the pixels of one part of the sample area."""
        probability = np.asarray(probability, dtype=np.float64)
        self.pixels += probability.size
        self.foreground += int(np.count_nonzero(probability > self.threshold))
        self.margin += float(np.abs(2.0 * probability - 1.0).sum())
        return self

    def statistics(self, contrast_score: float | None) -> dict[str, float]:
        """The statistics of :func:`trust_statistics` over every pixel added."""
        if self.pixels == 0:
            raise ValueError("probability must hold at least one pixel, got an empty array.")
        return {
            "foreground_fraction": self.foreground / self.pixels,
            "mean_margin": self.margin / self.pixels,
            "contrast_score": float("nan") if contrast_score is None else float(contrast_score),
        }


def trust_statistics(probability: np.ndarray, contrast_score: float | None, threshold: float = 0.5) -> dict[str, float]:
    """The statistics the trust check compares: ``foreground_fraction`` (of ``probability > threshold``),
    ``mean_margin`` (mean ``|2 p - 1|``) and ``contrast_score`` (NaN when unknown).

    Args:
        probability: particle probability of the sample area (data bar excluded), any shape.
        contrast_score: the contrast score of the image the network saw, or None.
        threshold: probability above which a pixel is particle.
    """
    return TrustTally(threshold).add(probability).statistics(contrast_score)


def trust_warning(statistics: dict[str, float]) -> str:
    """A short reason text for every statistic of :func:`trust_statistics` outside the range of the training
    images, joined by ``"; "``; an empty string when the image looks like them."""
    reasons = []
    fraction = statistics["foreground_fraction"]
    if fraction > MAX_FOREGROUND_FRACTION:
        reasons.append(
            f"particles cover {fraction:.0%} of the image (above {MAX_FOREGROUND_FRACTION:.0%}): background "
            "segmented as particles? check the contrast setting"
        )
    elif fraction < MIN_FOREGROUND_FRACTION:
        reasons.append(f"particles cover {fraction:.2%} of the image (below {MIN_FOREGROUND_FRACTION:.1%})")
    margin = statistics["mean_margin"]
    if margin < MIN_MEAN_MARGIN:
        reasons.append(f"network undecided (mean probability margin {margin:.2f} below {MIN_MEAN_MARGIN})")
    score = statistics.get("contrast_score", float("nan"))
    if np.isfinite(score) and score < MIN_CONTRAST_SCORE:
        if score < 0:
            reasons.append(
                f"particles look dark to the network (contrast score {score:+.2f}): check the contrast setting"
            )
        else:
            reasons.append(f"no clear particle contrast (contrast score {score:+.2f} below {MIN_CONTRAST_SCORE})")
    return "; ".join(reasons)
