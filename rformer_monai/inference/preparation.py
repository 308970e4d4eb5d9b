"""What the network sees of a micrograph, one block at a time: the bundle's preprocessing
(:func:`~rformer_monai.transforms.inference_transforms`: data bar cropped, dark particles turned bright, the film's
background flattened, intensities normalised) with its whole-image decisions taken in streaming passes over the
file, so that every block is prepared exactly as the whole image would be.

:func:`prepare_micrograph` reads the sample rows (above the data bar) a strip at a time:

1. their range and the grey values the contrast is decided on (all of them up to :data:`CONTRAST_SAMPLE_PIXELS`,
   every k-th row and column of a larger image);
2. with ``flatten_background``, the block means the film background is estimated from
   (:func:`~rformer_monai.transforms.background.shrunk_means`; the estimate itself is small, 1/64 of the pixels),
   then the lowest flattened value (the flattened image is shifted back to the input's minimum);
3. the intensity statistics of the prepared image, for the normalisation.

The returned :class:`PreparedMicrograph` reads any region of the prepared image.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import MetaTensor

from rformer_monai.inference.blocks import IntensityStatistics, intensity_statistics, normalise_block
from rformer_monai.transforms.background import BACKGROUND_SHRINK, expand_background, shrunk_means, smooth_background
from rformer_monai.transforms.contrast import DARK, ParticleContrast, contrast_score
from rformer_monai.transforms.io import MicrographSource, check_grey_values

__all__ = ["CONTRAST_SAMPLE_PIXELS", "PreparedMicrograph", "prepare_micrograph"]

logger = logging.getLogger(__name__)

CONTRAST_SAMPLE_PIXELS = 1 << 24
"""Most grey values the contrast is decided on: every pixel of an image up to 4096 x 4096, as the whole-image
pipeline decides it; every k-th row and column of a larger one."""
STRIP_PIXELS = 1 << 22
"""Pixels read at a time by the passes (rounded to whole rows, a multiple of the background's shrink factor)."""


def _strips(rows: int, width: int) -> list[slice]:
    strip_rows = max(1, STRIP_PIXELS // width) // BACKGROUND_SHRINK * BACKGROUND_SHRINK or BACKGROUND_SHRINK
    return [slice(start, min(start + strip_rows, rows)) for start in range(0, rows, strip_rows)]


def _sample_stride(rows: int, width: int) -> int:
    return max(1, math.ceil(math.sqrt(rows * width / CONTRAST_SAMPLE_PIXELS)))


def _sampled(values: np.ndarray, strip: slice, stride: int) -> np.ndarray:
    """The pixels of a strip of rows that lie on the image's every ``stride``-th row and column."""
    return values[(-strip.start) % stride :: stride, ::stride]


@dataclass(frozen=True)
class PreparedMicrograph:
    """A micrograph's sample rows as the network sees them, read by region.

    Attributes:
        source: the micrograph file.
        shape: (sample rows, width).
        contrast: the polarity it is read with (``bright`` or ``dark``).
        contrast_score: the contrast score of the prepared image (the trust check's).
        inversion: ``max + min`` of the sample rows where the image is inverted (``x -> inversion - x``), else None.
        background: the smoothed film background at 1/:data:`BACKGROUND_SHRINK` scale, or None (not flattened).
        offset: added after the background is subtracted (the flattened image starts at the input's minimum).
        intensity: the normalisation (``unit``, ``zscore`` or ``none``).
        statistics: the prepared image's intensity statistics.
    """

    source: MicrographSource
    shape: tuple[int, int]
    contrast: str
    contrast_score: float
    inversion: float | None
    background: np.ndarray | None
    offset: float
    intensity: str
    statistics: IntensityStatistics | None = None

    def read(self, rows: slice, columns: slice) -> np.ndarray:
        """Rows x columns of the prepared grey values (float32), before the normalisation."""
        grey = self.source.read(rows, columns).astype(np.float32)
        if self.inversion is not None:
            grey = np.float32(self.inversion) - grey
        if self.background is None:
            return grey
        return self._flattened(grey, rows, columns).astype(np.float32)

    def _flattened(self, grey: np.ndarray, rows: slice, columns: slice) -> np.ndarray:
        rows, columns = (slice(*side.indices(extent)[:2]) for side, extent in zip((rows, columns), self.shape))
        flattened = grey.astype(np.float64) - expand_background(self.background, rows, columns)
        flattened += self.offset
        return flattened

    def block(self, rows: slice, columns: slice) -> torch.Tensor:
        """Rows x columns normalised with the whole image's statistics: the network's input (h, w)."""
        return normalise_block(self.read(rows, columns), self.intensity, self.statistics)


def prepare_micrograph(
    source: MicrographSource, rows: int, contrast: str, flatten_background: bool, intensity: str
) -> PreparedMicrograph:
    """Decide a micrograph's contrast, estimate its background and measure its intensities in streaming passes
    (module docstring).

    Args:
        source: the open micrograph.
        rows: its sample rows (above the data bar).
        contrast: ``bright``, ``dark`` or ``auto`` (decided from the grey values, logged naming the file).
        flatten_background: subtract the smooth film background.
        intensity: the normalisation, ``unit``, ``zscore`` or ``none``.
    """
    width = source.shape[1]
    strips = _strips(rows, width)
    stride = _sample_stride(rows, width)
    minimum, maximum, not_finite, sample = math.inf, -math.inf, 0, []
    for strip in strips:
        grey = source.read(strip, slice(None)).astype(np.float32)
        not_finite += int(np.count_nonzero(~np.isfinite(grey)))
        minimum = min(minimum, float(np.nanmin(grey, initial=math.inf)))
        maximum = max(maximum, float(np.nanmax(grey, initial=-math.inf)))
        sample.append(_sampled(grey, strip, stride))
    check_grey_values(not_finite, minimum, maximum, source.path)
    if stride > 1:
        logger.info("%s: contrast decided on every %d-th row and column", source.path, stride)
    sample_image = MetaTensor(torch.from_numpy(np.concatenate(sample)), meta={"filename_or_obj": str(source.path)})
    del sample
    polarity, score = ParticleContrast(contrast).decide(sample_image)
    inversion = None
    if polarity == DARK:
        inversion = float(np.float32(maximum) + np.float32(minimum))
        score = -score
    prepared = PreparedMicrograph(source, (rows, width), polarity, score, inversion, None, 0.0, intensity)
    if flatten_background:
        means = np.concatenate([shrunk_means(prepared.read(strip, slice(None))) for strip in strips])
        unshifted = dataclasses.replace(prepared, background=smooth_background(means))
        lowest, sample = math.inf, []
        for strip in strips:
            flattened = unshifted._flattened(prepared.read(strip, slice(None)), strip, slice(None))
            lowest = min(lowest, float(flattened.min()))
            sample.append(_sampled(flattened, strip, stride))
        if inversion is None:
            prepared_minimum = minimum
        else:
            prepared_minimum = float(np.float32(inversion) - np.float32(maximum))
        prepared = dataclasses.replace(
            unshifted, contrast_score=contrast_score(np.concatenate(sample)), offset=prepared_minimum - lowest
        )
    return dataclasses.replace(prepared, statistics=intensity_statistics(prepared, rows))
