"""Separation targets tried beside the shipped distance map and not adopted (see docs/results.md): a band around
the lines between touching particles, the border proximity at a fixed radius, and HoVer-Net's centre offsets
with the boundary map that turns predicted offsets back into lines between particles.

Research configs use them by ``_target_`` as the training label's transform
(``"separation_target": {"_target_": "research.targets.SeparationBandd", "keys": "label"}``).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Transform
from scipy import ndimage as ndi

from rformer_monai.particles.labelling import FOUR_CONNECTED, label_particles
from rformer_monai.particles.separation import separation_map
from rformer_monai.transforms.array import _one_channel_mask, _stacked_like, separation_lines
from rformer_monai.transforms.dictionary import _ArrayTransformd, _LineWeightAndTargetd

# half-width of the separation band: on the 30 BAM masks with their lines closed, cutting the watershed
# landscape along a band of half-width 1 or 2 around the true lines finds the particles at F1 0.88 (IoU 0.5);
# 2, the wider, for a decoder fused at 1/4 resolution (the two were not compared by training)
DEFAULT_SEPARATION_BAND_PX = 2
# distance from the border at which the border proximity reaches 0: about the radius of a median BAM particle
DEFAULT_BORDER_RADIUS_PX = 5.0

OFFSET_FLIP_SLOPE = 0.25
"""The change of a centre offset (in [-1, 1]) per pixel that :func:`offset_boundaries` counts as a whole
boundary: a jump from +1 to -1 drawn over 8 px; steeper changes saturate at 1. Chosen on the true masks
(``python -m rformer_monai.separation_check``, guide "offsets", on 6 of the 30 images): F1 0.866 at 0.25,
0.847 at 0.5, 0.855 at 0.1."""
OFFSET_CHANNELS = 2
"""Horizontal and vertical centre offsets (:class:`CentreOffsets`)."""


class SeparationBand(Transform):
    """Append a second channel to a binary mask (1, H, W): the band around the lines that separate touching
    particles (:func:`separation_lines` widened by ``half_width_px`` 4-connected dilations), a target from
    which a network learns where to split agglomerates.

    Args:
        half_width_px: dilations of the one-pixel lines (>= 0): the band is ``2 * half_width_px + 1`` wide.
    """

    def __init__(self, half_width_px: int = DEFAULT_SEPARATION_BAND_PX) -> None:
        if isinstance(half_width_px, bool) or not isinstance(half_width_px, int) or half_width_px < 0:
            raise ValueError(f"half_width_px must be a whole number >= 0, got {half_width_px!r}.")
        self.half_width_px = half_width_px

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (2, H, W): the mask and its separation band, both 0/1, of ``mask``'s type."""
        array = _one_channel_mask(mask)
        band = separation_lines(array)
        if self.half_width_px and band.any():
            band = ndi.binary_dilation(band, structure=FOUR_CONNECTED, iterations=self.half_width_px)
        return _stacked_like(mask, array, band)


class BorderProximity(Transform):
    """Append a second channel to a binary mask (1, H, W): how close each pixel is to a particle's border,
    ``1 - min(d, radius_px) / radius_px`` with ``d`` the distance to the nearest background pixel (the
    lines between touching particles are background): 1 on background, ``1 - 1 / radius_px`` on a
    particle's outermost pixels, 0 in its core; a soft target that a coarse decoder can draw, high
    where touching particles meet.

    Args:
        radius_px: distance (> 0) from the border at which the proximity reaches 0.
    """

    def __init__(self, radius_px: float = DEFAULT_BORDER_RADIUS_PX) -> None:
        if isinstance(radius_px, bool) or not radius_px > 0:
            raise ValueError(f"radius_px must be > 0, got {radius_px!r}.")
        self.radius_px = float(radius_px)

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (2, H, W): the 0/1 mask and its border proximity in [0, 1], of ``mask``'s type."""
        array = _one_channel_mask(mask)
        distance = ndi.distance_transform_edt(array)
        proximity = 1.0 - np.minimum(distance, self.radius_px) / self.radius_px
        return _stacked_like(mask, array, proximity)


class CentreOffsets(Transform):
    """Append two channels to a binary mask (1, H, W): each pixel's horizontal and vertical offset from the
    centroid of its 4-connected particle, divided by the particle's largest offset along that axis and mapped
    from [-1, 1] to [0, 1] (0.5 at the centroid and on the background). Across the line between two touching
    particles an offset jumps from one particle's far side to the other's near side, a step that a network
    can draw where it cannot draw the one-pixel line itself: the horizontal and vertical maps of HoVer-Net
    (Graham et al., Medical Image Analysis 2019), which :func:`offset_boundaries`
    turns back into boundaries.
    """

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (3, H, W): the 0/1 mask, its horizontal and its vertical offsets in [0, 1], of ``mask``'s type."""
        array = _one_channel_mask(mask)
        labels = label_particles(array)
        offsets = [np.full(array.shape, 0.5), np.full(array.shape, 0.5)]
        count = int(labels.max())
        if count:
            index = np.arange(1, count + 1)
            inside = labels > 0
            particle = labels[inside]
            rows, columns = np.nonzero(inside)
            centroids = np.asarray(ndi.center_of_mass(array, labels, index)).reshape(count, 2)
            for axis, coordinates in ((1, columns), (0, rows)):
                offset = coordinates - centroids[particle - 1, axis]
                largest = np.asarray(ndi.maximum(np.abs(offset), particle, index)).reshape(count)
                scale = np.maximum(largest, np.finfo(np.float64).eps)
                offsets[1 - axis][inside] = 0.5 + 0.5 * offset / scale[particle - 1]
        return _stacked_like(mask, array, *offsets)


class SeparationBandd(_ArrayTransformd):
    """Append the separation band as a second channel to the masks under ``keys`` (see
    :class:`SeparationBand`)."""

    def __init__(
        self, keys: KeysCollection, half_width_px: int = DEFAULT_SEPARATION_BAND_PX, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = SeparationBand(half_width_px)


class BorderProximityd(_ArrayTransformd):
    """Append the border proximity as a second channel to the masks under ``keys`` (see
    :class:`BorderProximity`)."""

    def __init__(
        self, keys: KeysCollection, radius_px: float = DEFAULT_BORDER_RADIUS_PX, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BorderProximity(radius_px)


class LineWeightAndCentreOffsetsd(_LineWeightAndTargetd):
    """Append the loss weights around the separation lines (:class:`SeparationWeight`) and the horizontal and
    vertical centre offsets (:class:`CentreOffsets`) to the masks under ``keys``: (4, H, W) labels for a
    network with two offset outputs beside its mask (experimental, ``research/configs/centre_offsets.json``)."""

    target = CentreOffsets


def offset_boundaries(offsets: np.ndarray) -> np.ndarray:
    """Where a network's centre offsets (2, H, W) in [0, 1] (horizontal, vertical; 0.5 at a particle's
    centroid, see :class:`CentreOffsets`) say that two particles meet. Inside a
    particle the horizontal offset only rises to the right and the vertical one only downwards; where a
    particle ends at its neighbour they fall back (from the far side of one particle to the near side of the
    next) or change across the other axis. The largest of those changes (central differences, in offsets
    of [-1, 1] per pixel) over :data:`OFFSET_FLIP_SLOPE`, clipped to [0, 1]: 1 on a boundary, 0 inside
    particles and on the background.

    Raises:
        ValueError: when ``offsets`` is not (2, H, W).
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    if offsets.ndim != 3 or offsets.shape[0] != OFFSET_CHANNELS:
        raise ValueError(f"offsets must be ({OFFSET_CHANNELS}, H, W), got shape {offsets.shape}.")
    horizontal, vertical = 2.0 * offsets - 1.0
    changes = (
        -np.gradient(horizontal, axis=1),
        -np.gradient(vertical, axis=0),
        np.abs(np.gradient(horizontal, axis=0)),
        np.abs(np.gradient(vertical, axis=1)),
    )
    return np.clip(np.maximum.reduce(changes) / OFFSET_FLIP_SLOPE, 0.0, 1.0)


def offsets_or_separation_map(separation: np.ndarray) -> np.ndarray:
    """A network's separation output as the (H, W) map the particle step cuts along: two channels (centre
    offsets) as their boundaries (:func:`offset_boundaries`), one as it is."""
    separation = np.asarray(separation, dtype=np.float64)
    if separation.ndim == 3 and separation.shape[0] == OFFSET_CHANNELS:
        return offset_boundaries(separation)
    return separation_map(separation)
