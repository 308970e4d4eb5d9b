"""Array transforms for SEM micrographs: the pieces MONAI lacks (loading, data bar, mask binarisation)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Crop, LoadImage, Transform
from monai.utils import convert_to_dst_type
from scipy import ndimage as ndi

from rformer_monai.particles.labelling import label_particles, separated_foreground
from rformer_monai.transforms.databar import MAX_BAR_FRACTION, detect_data_bar
from rformer_monai.transforms.io import MicrographReader

logger = logging.getLogger(__name__)

DATA_BAR_ROWS_KEY = "data_bar_rows"
UNANNOTATED_ROWS_KEY = "unannotated_bottom_rows"  # in a mask's meta: rows padded below a mask cropped above the data bar
# masks are binarised at half of their dtype's full scale (the paper thresholds at 0.5 after scaling)
MASK_THRESHOLD_FRACTION = 0.5
UNIT_RANGE_MAX = 1.0  # full scale of masks without metadata (0/1 floats)
# the loss-weight map around the separation lines: the original U-Net's w0 = 10 (Ronneberger et al. 2015),
# decaying with the distance to the line over about a small BAM particle's radius
DEFAULT_LINE_WEIGHT = 10.0
DEFAULT_LINE_SIGMA_PX = 3.0
# particles smaller than a balance area weigh as much as one of that area, at most this many times their own
# weight: the line weight's 1 + w0 rounded, so that no pixel of a small particle outweighs a line
DEFAULT_MAX_BALANCE = 10.0
# specks below the particle step's minimum size (analysis.DEFAULT_MIN_SIZE_PX), mostly slivers of the annotation,
# are left at weight 1
SMALLEST_BALANCED_AREA_PX = 10
_NEIGHBOURHOOD = 3  # the 8-neighbourhood (3x3) in which a line pixel sees two particles


class LoadMicrograph(LoadImage):
    """Load a micrograph or mask as a channel-first grey ``MetaTensor`` (1, H, W), pixel size in its meta.

    Only :class:`MicrographReader` reads the files: its errors (``MicrographReadError``) reach the caller
    as they are, where ``LoadImage`` would try MONAI's other readers (a multi-page TIFF read as a volume).

    Args:
        pixel_size_nm: overrides the pixel size found in the files' metadata.
        dtype: the output dtype.
    """

    def __init__(self, pixel_size_nm: float | None = None, dtype=np.float32) -> None:
        self.micrograph_reader = MicrographReader(pixel_size_nm=pixel_size_nm)
        super().__init__(reader=self.micrograph_reader, image_only=True, dtype=dtype, ensure_channel_first=True)

    def __call__(self, filename, reader=None):  # type: ignore[override]
        """Load ``filename`` with ``reader``, by default the micrograph reader alone."""
        return super().__call__(filename, reader=self.micrograph_reader if reader is None else reader)


class CropDataBar(Crop):
    """Crop the instrument data bar from the bottom of a channel-first 2-D micrograph.

    The number of cropped rows is stored in ``meta["data_bar_rows"]``; the crop is invertible (MONAI's
    ``Invertd`` pads the rows back with zeros), so outputs can be placed at the input's full size.

    Args:
        crop_bottom: rows to crop; ``None`` detects the bar (see :func:`detect_data_bar`), 0 crops nothing.
    """

    def __init__(self, crop_bottom: int | None = None) -> None:
        super().__init__()
        if crop_bottom is not None and crop_bottom < 0:
            raise ValueError(f"crop_bottom must be None (detect) or >= 0, got {crop_bottom}.")
        self.crop_bottom = crop_bottom

    def rows_to_crop(self, img: torch.Tensor | np.ndarray) -> int:
        """The number of bottom rows to crop from ``img`` (1, H, W): the fixed setting or the detected bar."""
        if self.crop_bottom is not None:
            return self.crop_bottom
        array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        return detect_data_bar(array[0])

    def __call__(self, img: torch.Tensor, rows: int | None = None) -> torch.Tensor:  # type: ignore[override]
        """Crop ``rows`` bottom rows (default: :meth:`rows_to_crop`) from ``img`` (1, H, W)."""
        rows = self.rows_to_crop(img) if rows is None else rows
        height = img.shape[1]
        if rows >= height:
            raise ValueError(f"cannot crop {rows} data-bar rows from an image of height {height}.")
        cropped = super().__call__(img, slices=(slice(0, height - rows),))
        if isinstance(cropped, MetaTensor):
            cropped.meta[DATA_BAR_ROWS_KEY] = rows
        return cropped


class BinarizeMask(Transform):
    """Binarise a mask to one channel of 0/1: foreground where the value is above half of its dtype's range.

    The full-scale value comes from ``meta["source_max"]`` (255 for 8-bit, 65535 for 16-bit, 1 for float).
    An integer mask holding only 0 and 1 is read as 0/1 (the values of a label image), not as a mask
    without particles. A mask with other values than 0 and full scale is binarised at half range with a
    warning naming the file, and so is a mask without a single particle pixel.
    """

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return a float 0/1 tensor of the same shape as ``mask`` (1, H, W)."""
        meta = mask.meta if isinstance(mask, MetaTensor) else {}
        source_max = float(meta.get("source_max", UNIT_RANGE_MAX))
        name = meta.get("filename_or_obj", "mask")
        if mask.ndim == 3 and mask.shape[0] == 1 and is_instance_label_image(_one_channel(mask), source_max):
            labels = np.rint(_one_channel(mask)).astype(np.int64)
            logger.info(
                "%s: an instance label image (%d particles): particles are its non-zero pixels",
                name,
                len(np.unique(labels)) - 1,
            )
            return _stacked_like(mask, separated_foreground(labels))
        levels = torch.unique(torch.as_tensor(mask)).tolist()
        threshold = MASK_THRESHOLD_FRACTION * source_max
        if source_max > 1 and set(levels) <= {0, 1}:
            threshold = MASK_THRESHOLD_FRACTION  # 0/1 labels stored in an integer dtype
        elif not set(levels) <= {0, source_max}:
            logger.warning(
                "%s: mask holds %d grey levels between %s and %s, not only 0 and %s: binarised at half range "
                "(particle where the value is above %s)",
                name,
                len(levels),
                _format_level(levels[0]),
                _format_level(levels[-1]),
                _format_level(source_max),
                _format_level(threshold),
            )
        binary = (mask > threshold).to(torch.float32)
        if not bool(binary.any()):
            logger.warning("%s: mask has no particle pixels (every pixel is background)", name)
        if isinstance(mask, MetaTensor) and not isinstance(binary, MetaTensor):
            binary = MetaTensor(binary, meta=mask.meta, applied_operations=mask.applied_operations)
        return binary


# an instance label image (0 background, 1..N one value per particle) is told from a grey-level mask (anti-aliased
# or compressed 0/255) by its neighbouring particle pixels: equal but for the borders between touching particles
INSTANCE_LABEL_COHERENCE = 0.9  # the least fraction of neighbouring particle pixels of equal value
FULL_SCALE_MAJORITY = 0.5  # a mask with this fraction of its particle pixels at full scale is a 0/full-scale mask


def is_instance_label_image(mask: np.ndarray, source_max: float) -> bool:
    """Whether the (H, W) ``mask`` is an instance label image: integer values, more than one particle value,
    fewer than half of its non-zero pixels at full scale (``source_max``) and at least
    :data:`INSTANCE_LABEL_COHERENCE` of its 4-neighbouring non-zero pixel pairs of equal value (a grey-level
    mask varies inside its particles and along their edges)."""
    values = np.asarray(mask)
    foreground = values > 0
    particle_pixels = int(foreground.sum())
    if particle_pixels == 0 or not np.array_equal(values, np.rint(values)):
        return False
    if len(np.unique(values[foreground])) < 2 or (values == source_max).sum() >= FULL_SCALE_MAJORITY * particle_pixels:
        return False
    pairs = equal = 0
    for first, second in ((values[:, :-1], values[:, 1:]), (values[:-1, :], values[1:, :])):
        both = (first > 0) & (second > 0)
        pairs += int(both.sum())
        equal += int((both & (first == second)).sum())
    return pairs > 0 and equal >= INSTANCE_LABEL_COHERENCE * pairs


def unannotated_bottom_rows(image_shape: Sequence[int], mask_shape: Sequence[int]) -> int | None:
    """How many bottom rows of an image of spatial shape ``image_shape`` (H, W) its mask of ``mask_shape`` leaves
    out: 0 for a mask of the image's size; the difference in height for a mask of its width cropped to the rows
    above the data bar (at most :data:`~rformer_monai.transforms.databar.MAX_BAR_FRACTION` of the height);
    ``None`` for any other shape."""
    (image_height, image_width), (mask_height, mask_width) = tuple(image_shape)[-2:], tuple(mask_shape)[-2:]
    missing = image_height - mask_height
    if mask_width != image_width or missing < 0 or missing > MAX_BAR_FRACTION * image_height:
        return None
    return missing


def _format_level(value: float) -> str:
    return f"{value:g}"


def _one_channel(image: torch.Tensor | np.ndarray, name: str = "mask") -> np.ndarray:
    """The (H, W) numpy array of a one-channel 2-D image (1, H, W); ``name`` says what it is in the error."""
    if image.ndim != 3 or image.shape[0] != 1:
        raise ValueError(f"{name} must be one-channel and 2-D, (1, H, W), got shape {tuple(image.shape)}.")
    return (image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image))[0]


def _one_channel_mask(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """The (H, W) bool array of a one-channel mask (1, H, W)."""
    return _one_channel(mask) > 0


def _stacked_like(mask: torch.Tensor | np.ndarray, *channels: np.ndarray):
    """(C, H, W) float32 of the (H, W) ``channels``, of ``mask``'s type (a MetaTensor keeps its meta)."""
    stacked = np.stack(channels).astype(np.float32)
    return convert_to_dst_type(stacked, mask, dtype=torch.float32 if isinstance(mask, torch.Tensor) else None)[0]


class LabelParticles(Transform):
    """Number the particles of a binary mask (1, H, W): its 4-connected components become instance labels 1..N
    (float32, 0 background), which a spatial augmentation with nearest-neighbour interpolation moves without
    losing which pixel belongs to which particle; :class:`SeparateParticles` turns them back into a mask.
    """

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (1, H, W) float32 instance labels of ``mask``'s type."""
        return _stacked_like(mask, label_particles(_one_channel_mask(mask)))


class SeparateParticles(Transform):
    """Turn instance labels (1, H, W) back into a binary mask with one-pixel background lines between touching
    particles (:func:`~rformer_monai.particles.labelling.separated_foreground`, the BAM convention). After a zoom out with
    nearest-neighbour interpolation, which skips rows and columns and with them the one-pixel lines (at zoom
    0.9 a third of the BAM particles merge), this draws the lines again where two particles came to touch.
    """

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        """Return the (1, H, W) 0/1 float32 mask of ``labels``' type."""
        array = _one_channel(labels, "labels")
        return _stacked_like(labels, separated_foreground(np.rint(array).astype(np.int64)))


def separation_lines(mask: np.ndarray) -> np.ndarray:
    """The background pixels of a binary (H, W) mask that separate touching particles: those whose 3x3
    neighbourhood holds two different 4-connected particles (the BAM masks' one-pixel lines)."""
    return _lines_between(label_particles(mask))


def separation_line_pairs(mask: np.ndarray) -> np.ndarray:
    """Number the :func:`separation_lines` of a binary (H, W) mask by the pair of touching particles they
    separate: (H, W) int64, 0 off the lines, 1..K for the K pairs (a pixel where three particles meet counts
    for the pair of the lowest and highest label among them)."""
    labels = label_particles(mask)
    on_line, lowest, highest = _lines_and_neighbours(labels)
    pairs = np.zeros(labels.shape, dtype=np.int64)
    if on_line.any():
        keys = lowest[on_line].astype(np.int64) * (int(labels.max()) + 1) + highest[on_line]
        pairs[on_line] = np.unique(keys, return_inverse=True)[1].reshape(-1) + 1
    return pairs


def _lines_between(labels: np.ndarray) -> np.ndarray:
    """:func:`separation_lines` of the mask whose 4-connected particles ``labels`` numbers."""
    return _lines_and_neighbours(labels)[0]


def _lines_and_neighbours(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The separation lines between the particles ``labels`` numbers, and the lowest and highest particle label
    in each pixel's 3x3 neighbourhood (the lowest is the int32 maximum where it holds no particle)."""
    unlabelled = np.iinfo(np.int32).max
    highest = ndi.maximum_filter(labels, size=_NEIGHBOURHOOD)
    lowest = ndi.minimum_filter(np.where(labels > 0, labels, unlabelled), size=_NEIGHBOURHOOD)
    on_line = (labels == 0) & (highest > 0) & (lowest != unlabelled) & (highest != lowest)
    return on_line, lowest, highest


class RelativeBorderProximity(Transform):
    """Append a second channel to a binary mask (1, H, W): each particle's border proximity relative to its own
    size, ``1 - d / d_max`` with ``d`` the distance to the nearest background pixel (the lines between touching
    particles are background) and ``d_max`` the largest ``d`` in the pixel's 4-connected particle: 1 on
    background, 0 at the centre of every particle however small. ``1 -`` this channel is a distance map
    normalised per particle, with one peak per particle: the target of a distance-map output, where
    a fixed radius would leave particles narrower than twice the radius without a core.
    """

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (2, H, W): the 0/1 mask and its relative border proximity in [0, 1], of ``mask``'s type."""
        array = _one_channel_mask(mask)
        labels = label_particles(array)
        distance = ndi.distance_transform_edt(array)
        largest = np.zeros(int(labels.max()) + 1)
        if largest.size > 1:
            largest[1:] = ndi.maximum(distance, labels, np.arange(1, largest.size))
        proximity = np.ones(array.shape)
        inside = labels > 0
        proximity[inside] = 1.0 - distance[inside] / largest[labels[inside]]
        return _stacked_like(mask, array, proximity)


class StackSeparationTargets(Transform):
    """Append the channels after the first of each of ``targets`` (transforms of a (1, H, W) mask into
    (1 + k, H, W), such as :class:`SeparationWeight`, k = 1) to a binary mask, the mask first.

    Args:
        targets: the target transforms, in channel order.
    """

    def __init__(self, targets: Sequence[Transform]) -> None:
        if not targets:
            raise ValueError("targets must name at least one target transform.")
        self.targets = list(targets)

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (1 + the targets' added channels, H, W) float32 of ``mask``'s type."""
        extras = [target(mask)[1:] for target in self.targets]
        extras = [extra.detach().cpu().numpy() if isinstance(extra, torch.Tensor) else extra for extra in extras]
        return _stacked_like(mask, _one_channel_mask(mask), *(channel for extra in extras for channel in extra))


class SeparationWeight(Transform):
    """Append a second channel to a binary mask (1, H, W): per-pixel loss weights that make the lines between
    touching particles count, ``1 + line_weight * exp(-d**2 / (2 * sigma_px**2))`` with ``d`` the distance to
    the nearest separation line (:func:`separation_lines`); 1 where no particles touch. After the original
    U-Net's weight map, with the distance to the line in place of the distances to the two nearest particles.

    With a ``balance_area_px``, small particles count as much as large ones: the weights on and around
    (3x3) a particle of area ``A`` below it are multiplied by ``balance_area_px / A``, at most ``max_balance``
    (specks under :data:`SMALLEST_BALANCED_AREA_PX` pixels keep their weight); where two particles meet,
    the line takes the smaller one's factor.

    Args:
        line_weight: extra weight on a line pixel (>= 0).
        sigma_px: distance (> 0) over which the extra weight decays.
        balance_area_px: area (px, >= 0) below which particles are weighted up; 0 weights every particle alike.
        max_balance: largest factor (>= 1) of that weighting.
    """

    def __init__(
        self,
        line_weight: float = DEFAULT_LINE_WEIGHT,
        sigma_px: float = DEFAULT_LINE_SIGMA_PX,
        balance_area_px: float = 0.0,
        max_balance: float = DEFAULT_MAX_BALANCE,
    ) -> None:
        if isinstance(line_weight, bool) or not line_weight >= 0:
            raise ValueError(f"line_weight must be >= 0, got {line_weight!r}.")
        if isinstance(sigma_px, bool) or not sigma_px > 0:
            raise ValueError(f"sigma_px must be > 0, got {sigma_px!r}.")
        if isinstance(balance_area_px, bool) or not balance_area_px >= 0:
            raise ValueError(f"balance_area_px must be >= 0, got {balance_area_px!r}.")
        if isinstance(max_balance, bool) or not max_balance >= 1:
            raise ValueError(f"max_balance must be >= 1, got {max_balance!r}.")
        self.line_weight = float(line_weight)
        self.sigma_px = float(sigma_px)
        self.balance_area_px = float(balance_area_px)
        self.max_balance = float(max_balance)

    def _balance(self, labels: np.ndarray) -> np.ndarray:
        """Each pixel's size factor: the largest factor of the particles in its 3x3 neighbourhood, else 1."""
        areas = np.bincount(labels.ravel())
        factors = np.clip(self.balance_area_px / np.maximum(areas, 1), 1.0, self.max_balance)
        factors[areas < SMALLEST_BALANCED_AREA_PX] = 1.0
        factors[0] = 1.0
        return ndi.maximum_filter(factors[labels], size=_NEIGHBOURHOOD)

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (2, H, W): the 0/1 mask and its loss weights (>= 1), of ``mask``'s type."""
        array = _one_channel_mask(mask)
        labels = label_particles(array)
        lines = _lines_between(labels)
        weight = np.ones(array.shape, dtype=np.float32)
        if lines.any():
            distance = ndi.distance_transform_edt(~lines)
            weight += self.line_weight * np.exp(-(distance**2) / (2 * self.sigma_px**2))
        if self.balance_area_px > 0:
            weight *= self._balance(labels)
        return _stacked_like(mask, array, weight)
