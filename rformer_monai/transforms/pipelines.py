"""The SEM transform pipelines shared by training, evaluation, inference and cross-validation.

The bundle's configs build these with ``_target_`` and named arguments, so that every caller gets the
same preprocessing and an override addresses a setting by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import (
    Compose,
    EnsureTyped,
    Identityd,
    MapTransform,
    NormalizeIntensityd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandZoomd,
    ScaleIntensityd,
    SpatialPadd,
)

from rformer_monai.transforms.background import FlattenBackgroundd
from rformer_monai.transforms.contrast import DEFAULT_CONTRAST, ParticleContrastd
from rformer_monai.transforms.dictionary import (
    BinarizeMaskd,
    CropDataBard,
    FitMaskToImaged,
    LabelParticlesd,
    LineWeightAndRelativeBorderd,
    LoadMicrographd,
    RelativeBorderProximityd,
    SeparateParticlesd,
    SeparationWeightd,
)

SEPARATION_TARGETS = {
    "relative_border": (RelativeBorderProximityd, None),
    "weight": (SeparationWeightd, "sigma_px"),
    "weight_and_relative_border": (LineWeightAndRelativeBorderd, "sigma_px"),
}
WEIGHTED_TARGETS = ("weight", "weight_and_relative_border")  # the targets whose label carries loss weights

IMAGE_KEY = "image"
LABEL_KEY = "label"
INTENSITY_MODES = ("zscore", "unit", "none")
# min-max per image keeps the grey-level contrast of particles against background, which a per-image
# z-score stretches up to five times more on a dark, nearly empty micrograph than on a crowded one
DEFAULT_INTENSITY = "unit"

# the paper's training crops and augmentations
ROI_SIZE = (256, 256)
FLIP_PROB = 0.5
ROTATE90_PROB = 0.5
BRIGHTNESS_PROB = 0.5
BRIGHTNESS_OFFSET = 0.1  # in units of the normalised intensity
CONTRAST_PROB = 0.5
CONTRAST_FACTOR = 0.2  # intensities scaled by 1 +/- this
ZOOM_PROB = 0.5
ZOOM_RANGE = (0.9, 1.1)
# crops centred on particles vs on background; particles are only about 10 % of the pixels
FOREGROUND_CROP_FRACTION = 0.5


def intensity_transform(mode: str, keys: Sequence[str] = (IMAGE_KEY,)) -> MapTransform:
    """The intensity normalisation: ``"unit"`` (min-max to [0, 1] per image, the bundle's since 0.5.0),
    ``"zscore"`` (the paper's, per image) or ``"none"`` (stored grey values, for classical thresholds)."""
    if mode == "none":
        return Identityd(keys=keys)
    if mode == "zscore":
        return NormalizeIntensityd(keys=keys)
    if mode == "unit":
        return ScaleIntensityd(keys=keys, minv=0.0, maxv=1.0)
    raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {mode!r}.")


def load_transforms(
    with_label: bool = True,
    intensity: str = DEFAULT_INTENSITY,
    crop_bottom: int | None = None,
    pixel_size_nm: float | None = None,
    contrast: str = DEFAULT_CONTRAST,
    flatten_background: bool = False,
) -> list[MapTransform]:
    """Deterministic loading: read, check mask geometry, crop the data bar, binarise the mask, turn dark
    particles bright (``contrast``, see :class:`~rformer_monai.transforms.contrast.ParticleContrastd`),
    subtract a smooth background (``flatten_background``, :class:`~rformer_monai.transforms.background.
    FlattenBackgroundd`), normalise."""
    keys = [IMAGE_KEY, LABEL_KEY] if with_label else [IMAGE_KEY]
    transforms: list[MapTransform] = [LoadMicrographd(keys=keys, pixel_size_nm=pixel_size_nm)]
    if with_label:
        transforms.append(FitMaskToImaged(keys=LABEL_KEY, reference_key=IMAGE_KEY))
    transforms.append(CropDataBard(keys=keys, source_key=IMAGE_KEY, crop_bottom=crop_bottom))
    if with_label:
        transforms.append(BinarizeMaskd(keys=LABEL_KEY))
    transforms.append(ParticleContrastd(keys=IMAGE_KEY, contrast=contrast))
    if flatten_background:
        transforms.append(FlattenBackgroundd(keys=IMAGE_KEY))
    transforms.append(intensity_transform(intensity))
    return transforms


def separation_transform(
    target: str, size_px: float | None = None, balance_area_px: float = 0.0, line_weight: float | None = None
) -> MapTransform:
    """The label transform that adds the separation target (a key of :data:`SEPARATION_TARGETS`) to the mask;
    ``size_px`` is the target's size argument (None for its default); for the targets with loss weights only
    (:class:`~rformer_monai.transforms.SeparationWeight`), ``balance_area_px`` is the area below which they
    count small particles up and ``line_weight`` their peak on a line between touching particles (None for
    the default)."""
    if target not in SEPARATION_TARGETS:
        raise ValueError(f"separation_target must be one of {sorted(SEPARATION_TARGETS)} or None, got {target!r}.")
    transform, size_argument = SEPARATION_TARGETS[target]
    arguments = {}
    if size_px is not None:
        if size_argument is None:
            raise ValueError(
                f"separation_target {target!r} takes no size: separation_px must be None, got {size_px!r}."
            )
        arguments[size_argument] = size_px
    # the loss weights' arguments, each with its value that leaves the weights alone and what it does to them
    weight_arguments = (("balance_area_px", balance_area_px, 0, " to balance"), ("line_weight", line_weight, None, ""))
    for name, value, unset, purpose in weight_arguments:
        if value is None or value == unset:
            continue
        if target not in WEIGHTED_TARGETS:
            raise ValueError(
                f"separation_target {target!r} has no loss weights{purpose}: {name} must be {unset}, got {value!r} "
                f"(use one of {sorted(WEIGHTED_TARGETS)})."
            )
        arguments[name] = value
    return transform(keys=LABEL_KEY, **arguments)


def train_transforms(
    roi_size: Sequence[int] = ROI_SIZE,
    num_samples: int = 4,
    intensity: str = DEFAULT_INTENSITY,
    crop_bottom: int | None = None,
    foreground_fraction: float = FOREGROUND_CROP_FRACTION,
    separation_target: str | MapTransform | None = None,
    separation_px: float | None = None,
    balance_area_px: float = 0.0,
    line_weight: float | None = None,
    contrast: str = DEFAULT_CONTRAST,
    flatten_background: bool = False,
) -> Compose:
    """The paper's training pipeline: crops sampling particles and background, flips, 90-degree rotations,
    brightness, contrast and zoom.

    Args:
        roi_size: crop size (H, W).
        num_samples: crops drawn from each image per epoch.
        intensity: ``"unit"`` or ``"zscore"`` (see :func:`intensity_transform`).
        crop_bottom: data-bar rows to crop; ``None`` detects the bar.
        foreground_fraction: fraction of crops centred on a particle pixel.
        separation_target: None keeps the one-channel mask; ``"weight_and_relative_border"`` (the bundle's)
            gives the label the loss weights around the lines between touching particles and each particle's
            distance map normalised per particle (:class:`LineWeightAndRelativeBorderd`, three channels);
            ``"weight"`` the loss weights alone (:class:`SeparationWeightd`) for a one-channel network trained
            with :class:`~rformer_monai.losses.DiceAndWeightedBCELoss`; ``"relative_border"`` the distance map
            alone (:class:`RelativeBorderProximityd`); or any label transform of the mask, applied as it is
            (the research targets).
        separation_px: the loss weights' decay (sigma) in px; None for the transform's default.
        balance_area_px: with loss weights (``"weight"``, ``"weight_and_relative_border"``), particles smaller
            than this many pixels weigh as much as one of this area
            (:class:`~rformer_monai.transforms.SeparationWeight`); 0 is off.
        line_weight: with loss weights, their peak above 1 on a line between touching particles; None for
            the default (:data:`~rformer_monai.transforms.array.DEFAULT_LINE_WEIGHT`).
        contrast: the particles' polarity in the training images, ``"bright"``, ``"dark"`` or ``"auto"`` (per
            image); dark particles are inverted, so the network learns (and fine-tunes) on bright particles
            only, the input inference gives it whatever the micrograph.
        flatten_background: subtract a smooth background before the normalisation (must match inference).
    """
    if not 0.0 <= foreground_fraction <= 1.0:
        raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}.")
    keys = [IMAGE_KEY, LABEL_KEY]
    targets = []
    if isinstance(separation_target, MapTransform):
        targets = [separation_target]
    elif separation_target is not None:
        targets = [separation_transform(separation_target, separation_px, balance_area_px, line_weight)]
    return Compose(
        load_transforms(
            with_label=True,
            intensity=intensity,
            crop_bottom=crop_bottom,
            contrast=contrast,
            flatten_background=flatten_background,
        )
        + [
            # the spatial augmentations move numbered particles, not a mask: a zoom out skips rows and columns,
            # and with them the one-pixel lines between touching particles, which SeparateParticlesd redraws
            LabelParticlesd(keys=LABEL_KEY),
            SpatialPadd(keys=keys, spatial_size=roi_size),
            RandCropByPosNegLabeld(
                keys=keys,
                label_key=LABEL_KEY,
                spatial_size=roi_size,
                pos=foreground_fraction,
                neg=1.0 - foreground_fraction,
                num_samples=num_samples,
            ),
            RandFlipd(keys=keys, prob=FLIP_PROB, spatial_axis=0),
            RandFlipd(keys=keys, prob=FLIP_PROB, spatial_axis=1),
            RandRotate90d(keys=keys, prob=ROTATE90_PROB, max_k=3),
            RandZoomd(
                keys=keys,
                prob=ZOOM_PROB,
                min_zoom=ZOOM_RANGE[0],
                max_zoom=ZOOM_RANGE[1],
                mode=("bilinear", "nearest"),
                keep_size=True,
            ),
            SeparateParticlesd(keys=LABEL_KEY),
        ]
        # the separation target joins the mask last, so that it sees the lines as augmented (and the crop
        # centres on particles of the mask alone: a weight or proximity channel is non-zero on the background)
        + targets
        + [
            RandShiftIntensityd(keys=IMAGE_KEY, offsets=BRIGHTNESS_OFFSET, prob=BRIGHTNESS_PROB),
            RandScaleIntensityd(keys=IMAGE_KEY, factors=CONTRAST_FACTOR, prob=CONTRAST_PROB),
            EnsureTyped(keys=keys, track_meta=False),
        ]
    )


def validation_transforms(
    intensity: str = DEFAULT_INTENSITY,
    crop_bottom: int | None = None,
    contrast: str = DEFAULT_CONTRAST,
    flatten_background: bool = False,
) -> Compose:
    """Whole images and masks, data bar cropped, for sliding-window validation and evaluation."""
    return Compose(
        load_transforms(
            with_label=True,
            intensity=intensity,
            crop_bottom=crop_bottom,
            contrast=contrast,
            flatten_background=flatten_background,
        )
    )


def inference_transforms(
    intensity: str = DEFAULT_INTENSITY,
    crop_bottom: int | None = None,
    pixel_size_nm: float | None = None,
    contrast: str = DEFAULT_CONTRAST,
    flatten_background: bool = False,
) -> Compose:
    """Whole images without masks, data bar cropped (invertible: outputs are padded back to full size), dark
    particles turned bright (``contrast``: ``"bright"``, ``"dark"`` or ``"auto"`` per image)."""
    return Compose(
        load_transforms(
            with_label=False,
            intensity=intensity,
            crop_bottom=crop_bottom,
            pixel_size_nm=pixel_size_nm,
            contrast=contrast,
            flatten_background=flatten_background,
        )
    )
