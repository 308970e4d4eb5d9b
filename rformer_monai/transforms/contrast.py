"""Particle contrast: bright particles on a dark film (SEM secondary electrons, what the shipped weights
were trained on) or dark particles on a bright film (transmission SEM, bright-field TEM).

The network always sees bright particles: a micrograph of dark particles is inverted before the
intensity normalisation (its grey values reflected about the middle of their range, so that after the
min-max normalisation the network sees ``1 - x``). ``"auto"`` decides per image from the tails of its
grey-value histogram (:func:`contrast_score`): particles cover a minority of a micrograph, so the film's
grey value is near the median and the particles make one tail of the histogram long. The score changes
sign exactly when the image is inverted, so a micrograph and its inverse get opposite decisions and the
network sees the same input for both (bit for bit for integer grey values). The decision costs one quantile
pass over the image: about 20 ms for a 1024x712 micrograph, against about 10 s of inference on one CPU core.

Limit: where particles cover most of the image, the film is the minority and ``"auto"`` reads the image the
wrong way round; the trust check (:mod:`rformer_monai.trust`) flags a foreground fraction above one half.
Set ``"bright"`` or ``"dark"`` for such images.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = [
    "AUTO",
    "BRIGHT",
    "CONTRAST_KEY",
    "CONTRAST_MODES",
    "CONTRAST_SCORE_KEY",
    "DARK",
    "DEFAULT_CONTRAST",
    "ParticleContrast",
    "ParticleContrastd",
    "check_contrast",
    "contrast_score",
    "decide_contrast",
    "invert_grey_values",
]

logger = logging.getLogger(__name__)

BRIGHT = "bright"
DARK = "dark"
AUTO = "auto"
CONTRAST_MODES = (BRIGHT, DARK, AUTO)
DEFAULT_CONTRAST = AUTO
CONTRAST_KEY = "contrast"
"""Meta key of the polarity decided for the image: ``"bright"`` or ``"dark"`` (what the particles were)."""
CONTRAST_SCORE_KEY = "contrast_score"
"""Meta key of :func:`contrast_score` of the image as the network sees it (positive: bright particles)."""

# The score compares the histogram's two tails at the first of these quantiles that gives a clear answer: the
# 1 % tails hold particles in micrographs where they cover as little as 1 % of the sample (the sparsest BAM
# image: 1.7 %) and are not moved by a few hot pixels; the 0.1 % tails answer for sparser micrographs (a
# synthetic one of 0.2 % coverage scores 0.08..0.19 at 1 %, 0.70..0.82 at 0.1 %). On the 30 BAM images the
# score (1 %) lies in 0.78..0.89, on synthetic micrographs of coverage 0.05..0.3 in 0.79..0.85, and it is
# exactly the negative for every inverse.
TAIL_QUANTILES = (0.01, 0.001)
# A score closer to 0 than this leaves the polarity in doubt (no clear long tail): the next, narrower tails
# are tried, and where they are in doubt too the image is read as bright (the network's own contrast) and
# the doubt logged. A quarter of the lowest score seen on the BAM images (0.78).
UNCERTAIN_SCORE = 0.2


def check_contrast(contrast: str) -> str:
    """Return ``contrast`` if it is one of :data:`CONTRAST_MODES`.

    Raises:
        ValueError: naming the argument, the value received and the valid choices.
    """
    if not isinstance(contrast, str) or contrast not in CONTRAST_MODES:
        raise ValueError(f"contrast must be one of {CONTRAST_MODES}, got {contrast!r}.")
    return contrast


def _as_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    return np.asarray(image, dtype=np.float64)


def _tail_skewness(values: np.ndarray, tail: float) -> float:
    low, median, high = np.quantile(values, [tail, 0.5, 1.0 - tail])
    spread = high - low
    return 0.0 if spread <= 0 else float((high + low - 2.0 * median) / spread)


def contrast_score(image: torch.Tensor | np.ndarray) -> float:
    """Quantile skewness of the grey values: ``(q_hi + q_lo - 2 * median) / (q_hi - q_lo)`` at the first
    tails of :data:`TAIL_QUANTILES` whose score is at least :data:`UNCERTAIN_SCORE` away from 0 (else at
    the first), in [-1, 1]; positive when the bright tail is the longer one (bright particles on a darker
    film), negative for dark particles, 0 for a constant image. Invariant to any increasing affine change of
    the grey values and negated by an inversion.

    Args:
        image: a micrograph of any shape (the data bar already cropped).
    """
    values = _as_array(image).ravel()
    if values.size == 0:
        raise ValueError("image must hold at least one pixel, got an empty array.")
    scores = [_tail_skewness(values, tail) for tail in TAIL_QUANTILES]
    return next((score for score in scores if abs(score) >= UNCERTAIN_SCORE), scores[0])


def decide_contrast(image: torch.Tensor | np.ndarray) -> tuple[str, float]:
    """The particles' polarity of a micrograph, ``"bright"`` or ``"dark"``, and its :func:`contrast_score`;
    a score within :data:`UNCERTAIN_SCORE` of 0 (no clear particle tail, e.g. a constant image) counts as
    bright, the network's own contrast."""
    score = contrast_score(image)
    return (DARK if score <= -UNCERTAIN_SCORE else BRIGHT), score


def invert_grey_values(image: torch.Tensor) -> torch.Tensor:
    """Reflect the grey values about the middle of their range: ``max + min - x``. After a min-max
    normalisation this is ``1 - x`` (of the normalised image), after a z-score ``-x``."""
    return image.max() + image.min() - image


class ParticleContrast(Transform):
    """Turn a micrograph into one of bright particles on a dark film, the contrast the network knows.

    Apply it before the intensity normalisation. It records the decision in the image's meta
    (:data:`CONTRAST_KEY`, and :data:`CONTRAST_SCORE_KEY` of the image as returned) and, for ``"auto"``,
    logs it naming the file.

    Args:
        contrast: ``"bright"`` (leave the image as it is), ``"dark"`` (invert it) or ``"auto"`` (decide per
            image with :func:`decide_contrast`).
    """

    def __init__(self, contrast: str = DEFAULT_CONTRAST) -> None:
        self.contrast = check_contrast(contrast)

    def decide(self, img: torch.Tensor) -> tuple[str, float]:
        """The polarity ``img`` is read with (the setting, or for ``"auto"`` :func:`decide_contrast`, logged
        naming the file) and its :func:`contrast_score`."""
        decision, score = decide_contrast(img)
        if self.contrast != AUTO:
            return self.contrast, score
        name = img.meta.get("filename_or_obj", "image") if isinstance(img, MetaTensor) else "image"
        doubt = " (uncertain: no clear particle tail, read as bright)" if abs(score) < UNCERTAIN_SCORE else ""
        logger.info("%s: %s particles (contrast score %+.3f)%s", name, decision, score, doubt)
        return decision, score

    def __call__(self, img: torch.Tensor, polarity: str | None = None) -> torch.Tensor:
        """Return ``img`` (C, H, W), inverted where its particles are dark; ``polarity`` (``"bright"`` or
        ``"dark"``, e.g. decided on another image of the sample) replaces the image's own decision."""
        if polarity is None:
            decision, score = self.decide(img)
        else:
            decision, score = polarity, contrast_score(img)
        if decision == DARK:
            img = invert_grey_values(img)
            score = -score
        if isinstance(img, MetaTensor):
            img.meta[CONTRAST_KEY] = decision
            img.meta[CONTRAST_SCORE_KEY] = score
        return img


class ParticleContrastd(MapTransform):
    """Dictionary wrapper of :class:`ParticleContrast`: the first key (the micrograph) decides the
    polarity, which every key then gets (several images of one sample are inverted together).

    Args:
        keys: image keys (not masks).
        contrast: ``"bright"``, ``"dark"`` or ``"auto"``.
        allow_missing_keys: don't raise when a key is absent.
    """

    def __init__(
        self, keys: KeysCollection, contrast: str = DEFAULT_CONTRAST, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.contrast = check_contrast(contrast)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        contrast = ParticleContrast(self.contrast)
        polarity = None
        for key in self.key_iterator(d):
            polarity = polarity or contrast.decide(d[key])[0]
            d[key] = contrast(d[key], polarity)
        return d
