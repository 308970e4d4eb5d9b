"""Flattening an uneven film: a smooth background (haze, a thickness or illumination gradient) subtracted
before the intensity normalisation, so that the min-max normalisation spends its range on the particles.

On in the bundle's inference (``flatten_background``): with the shipped weights and ``contrast="auto"`` the 30 BAM
images keep their pooled Dice (0.9567 without, 0.9565 with it), and five inverted BAM images under a smooth additive gradient
(a haze proxy) go from pooled Dice 0.573 to 0.958 (``research/contrast_check.py --flatten_background``,
``research/contrast_haze.py``). Apply it after
:class:`~rformer_monai.transforms.contrast.ParticleContrastd`: the background is estimated as a low
percentile of the grey values around each pixel, which is the film only where the particles are bright.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from scipy import ndimage

from rformer_monai.transforms.contrast import CONTRAST_SCORE_KEY, contrast_score

__all__ = [
    "FlattenBackground",
    "FlattenBackgroundd",
    "estimate_background",
    "expand_background",
    "shrunk_means",
    "smooth_background",
]

# The background is estimated on the image shrunk by this factor (block means: fast, and the noise averaged).
BACKGROUND_SHRINK = 8
# Window of the percentile filter, in shrunk pixels: 21 x 8 = 168 px, several BAM particles (ECD about
# 25 px) wide, so that inside any window the film shows between particles.
BACKGROUND_WINDOW = 21
# The percentile taken as the film's grey value: low, below the bright particles (which cover up to a third of
# a BAM micrograph), above the noise floor of the darkest pixels.
BACKGROUND_PERCENTILE = 20
# Smoothing of the estimate, in shrunk pixels (32 px at full size), so that it holds no particle edges.
BACKGROUND_SMOOTHING_SIGMA = 4.0
BACKGROUND_FLATTENED_KEY = "background_flattened"
"""Meta key set to True on a flattened image."""


def shrunk_means(image: np.ndarray) -> np.ndarray:
    """Means of the :data:`BACKGROUND_SHRINK`-pixel squares of an (H, W) image (its last rows and columns repeated
    to fill the squares), in float64. Rows in multiples of the shrink factor can be shrunk apart and stacked."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"image must be a non-empty 2-D (H, W) array, got shape {image.shape}.")
    height, width = image.shape
    padded = np.pad(image, ((0, -height % BACKGROUND_SHRINK), (0, -width % BACKGROUND_SHRINK)), mode="edge")
    rows, cols = padded.shape[0] // BACKGROUND_SHRINK, padded.shape[1] // BACKGROUND_SHRINK
    return padded.reshape(rows, BACKGROUND_SHRINK, cols, BACKGROUND_SHRINK).mean(axis=(1, 3))


def smooth_background(shrunk: np.ndarray) -> np.ndarray:
    """The film's grey value at the shrunk scale: a low percentile around every square, smoothed."""
    background = ndimage.percentile_filter(shrunk, BACKGROUND_PERCENTILE, size=BACKGROUND_WINDOW, mode="reflect")
    return ndimage.gaussian_filter(background, BACKGROUND_SMOOTHING_SIGMA, mode="reflect")


def expand_background(background: np.ndarray, rows: slice, columns: slice) -> np.ndarray:
    """Rows x columns of the shrunk background at full size, by linear interpolation (``scipy.ndimage.zoom`` by the
    shrink factor, ``grid_mode=True``, computed for the region only)."""
    row_indices, column_indices = (
        np.arange(*side.indices(extent * BACKGROUND_SHRINK)) for side, extent in zip((rows, columns), background.shape)
    )
    coordinates = np.meshgrid(
        (row_indices + 0.5) / BACKGROUND_SHRINK - 0.5, (column_indices + 0.5) / BACKGROUND_SHRINK - 0.5, indexing="ij"
    )
    return ndimage.map_coordinates(background, coordinates, order=1, mode="nearest")


def estimate_background(image: np.ndarray) -> np.ndarray:
    """The smooth film grey value under a 2-D micrograph of bright particles, at the image's size.

    Args:
        image: (H, W) grey values.
    """
    background = smooth_background(shrunk_means(image))
    height, width = np.shape(image)
    return expand_background(background, slice(0, height), slice(0, width))


class FlattenBackground(Transform):
    """Subtract :func:`estimate_background` from every channel of a (C, H, W) micrograph of bright particles
    (the result's minimum is moved to the input's, so the grey values stay in range); a contrast score in the
    meta is recomputed on the result."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        flattened = np.stack([channel - estimate_background(channel) for channel in array.astype(np.float64)])
        flattened += float(array.min()) - flattened.min()
        result = torch.as_tensor(flattened, dtype=img.dtype if isinstance(img, torch.Tensor) else torch.float32)
        if isinstance(img, MetaTensor):
            result = MetaTensor(result, meta=dict(img.meta), applied_operations=list(img.applied_operations))
            result.meta[BACKGROUND_FLATTENED_KEY] = True
            if CONTRAST_SCORE_KEY in result.meta:  # the score of the image the network sees, for the trust check
                result.meta[CONTRAST_SCORE_KEY] = contrast_score(flattened)
        return result


class FlattenBackgroundd(MapTransform):
    """Dictionary wrapper of :class:`FlattenBackground` (image keys, not masks)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.flatten = FlattenBackground()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.flatten(d[key])
        return d
