"""Dictionary versions of the SEM transforms (MONAI style: ``keys`` plus one array transform each)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst, InvertibleTransform, LoadImaged, MapTransform, Transform

from rformer_monai.transforms.array import (
    DEFAULT_LINE_SIGMA_PX,
    DEFAULT_LINE_WEIGHT,
    UNANNOTATED_ROWS_KEY,
    BinarizeMask,
    CropDataBar,
    LabelParticles,
    RelativeBorderProximity,
    SeparateParticles,
    SeparationWeight,
    StackSeparationTargets,
    unannotated_bottom_rows,
)
from rformer_monai.transforms.io import MaskShapeError, Micrograph, MicrographReader

SEPARATION_CHANNELS = 2  # particle probability and one separation channel (a band or a distance map)
MASK_AND_WEIGHT_CHANNELS = 2  # a label's mask and loss weights, before its separation targets (StackSeparationTargets)
SEPARATION_POSTFIX = "_separation"  # the key of a prediction's separation channel: <key>_separation


class LoadMicrographd(LoadImaged):
    """Load micrographs and masks under ``keys`` as channel-first grey ``MetaTensor`` (1, H, W).

    Only :class:`MicrographReader` reads the files, so its errors (``MicrographReadError``) reach the caller
    as they are (see :class:`~rformer_monai.transforms.LoadMicrograph`).

    Args:
        keys: keys of the file paths to load.
        pixel_size_nm: overrides the pixel size found in the files' metadata.
        allow_missing_keys: don't raise when a key is absent.
    """

    def __init__(
        self, keys: KeysCollection, pixel_size_nm: float | None = None, dtype=np.float32, allow_missing_keys: bool = False
    ) -> None:
        self.micrograph_reader = MicrographReader(pixel_size_nm=pixel_size_nm)
        super().__init__(
            keys,
            reader=self.micrograph_reader,
            image_only=True,
            dtype=dtype,
            ensure_channel_first=True,
            allow_missing_keys=allow_missing_keys,
        )

    def __call__(self, data, reader=None):  # type: ignore[override]
        """Load the files under ``keys`` with ``reader``, by default the micrograph reader alone; a
        :class:`~rformer_monai.transforms.io.Micrograph` already in memory is taken as it is."""
        in_memory = {key: data[key] for key in self.key_iterator(data) if isinstance(data[key], Micrograph)}
        if not in_memory:
            return super().__call__(data, reader=self.micrograph_reader if reader is None else reader)
        d = dict(data)
        for key, micrograph in in_memory.items():
            array, meta = self.micrograph_reader.get_data(micrograph)
            meta.setdefault("filename_or_obj", meta.get("name", "array"))
            image = MetaTensor.ensure_torch_and_prune_meta(np.asarray(array, dtype=self._loader.dtype), meta)
            d[key] = EnsureChannelFirst()(image)
        files = {key: value for key, value in d.items() if key not in in_memory}
        loaded = super().__call__(files, reader=self.micrograph_reader if reader is None else reader) if any(
            key in files for key in self.keys) else files
        return {**d, **{key: loaded[key] for key in loaded}}


class CropDataBard(MapTransform, InvertibleTransform):
    """Crop the data bar detected on ``source_key`` from every key (image and mask are cropped together).

    Args:
        keys: keys to crop.
        source_key: key of the micrograph the bar is detected on.
        crop_bottom: rows to crop; ``None`` detects the bar, 0 crops nothing.
        allow_missing_keys: don't raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str = "image",
        crop_bottom: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.cropper = CropDataBar(crop_bottom=crop_bottom)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        rows = self.cropper.rows_to_crop(d[self.source_key])
        # at least the rows a mask cropped above the data bar leaves out (FitMaskToImaged padded them)
        rows = max([rows, *(_unannotated_rows(d[key]) for key in self.key_iterator(d))])
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key], rows=rows)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d


class _ArrayTransformd(MapTransform):
    """Apply ``self.transform``, an array transform that subclasses build, to the arrays under ``keys``."""

    transform: Transform

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class BinarizeMaskd(_ArrayTransformd):
    """Binarise the masks under ``keys`` to 0/1 (see :class:`BinarizeMask`)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BinarizeMask()


class LabelParticlesd(_ArrayTransformd):
    """Replace the binary masks under ``keys`` by their particles' instance labels (see :class:`LabelParticles`)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = LabelParticles()


class SeparateParticlesd(_ArrayTransformd):
    """Replace the instance labels under ``keys`` by the binary mask with one-pixel lines between touching
    particles (see :class:`SeparateParticles`)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = SeparateParticles()


class RelativeBorderProximityd(_ArrayTransformd):
    """Append the relative border proximity as a second channel to the masks under ``keys`` (see
    :class:`RelativeBorderProximity`)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = RelativeBorderProximity()


class SeparationWeightd(_ArrayTransformd):
    """Append the loss weights around the separation lines (small particles weighted up with a
    ``balance_area_px``) as a second channel to the masks under ``keys`` (see :class:`SeparationWeight`)."""

    def __init__(
        self,
        keys: KeysCollection,
        line_weight: float = DEFAULT_LINE_WEIGHT,
        sigma_px: float = DEFAULT_LINE_SIGMA_PX,
        balance_area_px: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = SeparationWeight(line_weight, sigma_px, balance_area_px)


class _LineWeightAndTargetd(_ArrayTransformd):
    """Append the loss weights around the separation lines (:class:`SeparationWeight`) and the channels of a
    separation target (the class attribute ``target``) to the masks under ``keys``."""

    target: type[Transform]

    def __init__(
        self,
        keys: KeysCollection,
        sigma_px: float = DEFAULT_LINE_SIGMA_PX,
        balance_area_px: float = 0.0,
        line_weight: float = DEFAULT_LINE_WEIGHT,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        weight = SeparationWeight(line_weight=line_weight, sigma_px=sigma_px, balance_area_px=balance_area_px)
        self.transform = StackSeparationTargets([weight, self.target()])


class LineWeightAndRelativeBorderd(_LineWeightAndTargetd):
    """Append the loss weights around the separation lines (:class:`SeparationWeight`) and the relative border
    proximity (:class:`RelativeBorderProximity`) to the masks under ``keys``: (3, H, W) labels for a network
    with a distance-map output trained with line-weighted cross-entropy on its mask
    (:class:`~rformer_monai.losses.WeightedMaskAndSeparationLoss`)."""

    target = RelativeBorderProximity


class SplitSeparationd(MapTransform):
    """Split the output of a network with separation channels: where the prediction under a key holds more
    than one channel (particle, then a separation band, a distance map or centre offsets), the channels after
    the first move to ``<key><separation_postfix>`` and the key keeps the first; a one-channel prediction is
    left as it is. A training label with loss weights and separation targets keeps its mask likewise.

    Args:
        keys: predictions or labels (C, H, W).
        separation_postfix: appended to the key to name the separation channels.
    """

    def __init__(
        self, keys: KeysCollection, separation_postfix: str = SEPARATION_POSTFIX, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.separation_postfix = separation_postfix

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            channels = d[key].shape[0]
            if channels < 1:
                raise ValueError(f"{key!r} must hold at least one channel, got shape {tuple(d[key].shape)}.")
            if channels > 1:
                d[f"{key}{self.separation_postfix}"] = d[key][1:]
                d[key] = d[key][:1]
        return d


def _unannotated_rows(value: torch.Tensor) -> int:
    return int(value.meta.get(UNANNOTATED_ROWS_KEY, 0)) if isinstance(value, MetaTensor) else 0


class FitMaskToImaged(MapTransform):
    """Give masks cropped to the rows above the data bar their image's height: their missing bottom rows are
    padded with background and recorded in ``meta["unannotated_bottom_rows"]``, so that :class:`CropDataBard`
    crops at least those rows from image and mask alike. A mask of any other shape than its image's (or its
    image's width and at most a data bar fewer rows, see :func:`unannotated_bottom_rows`) raises
    ``MaskShapeError`` naming both files.

    Args:
        keys: keys of the masks.
        reference_key: key of the micrograph they belong to.
    """

    def __init__(self, keys: KeysCollection, reference_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        reference = d[self.reference_key]
        for key in self.key_iterator(d):
            mask = d[key]
            rows = unannotated_bottom_rows(reference.shape[1:], mask.shape[1:])
            if rows is None:
                raise MaskShapeError(
                    _file_name(mask, key),
                    f"has shape {tuple(mask.shape[1:])} but its image {_file_name(reference, self.reference_key)} "
                    f"has shape {tuple(reference.shape[1:])}: a mask must have its image's height and width "
                    "(or its width and the rows above the data bar)",
                )
            if rows:
                padded = torch.nn.functional.pad(torch.as_tensor(mask), (0, 0, 0, rows))
                meta = dict(mask.meta) if isinstance(mask, MetaTensor) else {}
                d[key] = MetaTensor(padded, meta={**meta, UNANNOTATED_ROWS_KEY: rows})
        return d


def _file_name(value: torch.Tensor, fallback: Hashable) -> str:
    if isinstance(value, MetaTensor) and "filename_or_obj" in value.meta:
        return str(value.meta["filename_or_obj"])
    return str(fallback)


