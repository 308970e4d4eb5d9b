"""The bundle's mask writer: ``<stem>_mask.tif`` (uint8 0/255, the input's full size) and optionally
``<stem>_prob.tif`` (float32 particle probability), written atomically."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from rformer_monai.files import MASK_FOREGROUND, MASK_SUFFIX, PROBABILITY_SUFFIX, output_stem, write_tiff_atomic
from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD
from rformer_monai.transforms.io import pixel_size_from_meta
from rformer_monai.workflows.settings import as_bool


class SaveMaskd(MapTransform):
    """Save the particle probability under ``keys`` (1, H, W) as ``OUT/<stem>_mask.tif`` (uint8 0/255), calibrated
    in nm for ImageJ where the meta holds the pixel size.

    Args:
        keys: keys of the probability maps (after ``Invertd``, at the input's full size).
        output_dir: the output folder.
        threshold: probability above which a pixel is particle.
        save_probability: also write ``OUT/<stem>_prob.tif`` (float32).
        source_key: key of the input image whose ``filename_or_obj`` names the outputs.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        threshold: float = DEFAULT_THRESHOLD,
        save_probability: bool = False,
        source_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.save_probability = as_bool(save_probability, "save_probability")
        self.source_key = source_key

    def _source_name(self, d: Mapping[Hashable, torch.Tensor], key: Hashable) -> str:
        for candidate in (d.get(key), d.get(self.source_key)):
            if isinstance(candidate, MetaTensor) and "filename_or_obj" in candidate.meta:
                return str(candidate.meta["filename_or_obj"])
        raise ValueError(f"cannot name the output of {key!r}: no 'filename_or_obj' in its meta or in {self.source_key!r}.")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            probability = d[key].detach().cpu().float().numpy()[0]
            stem = output_stem(self._source_name(d, key))
            meta = d[key].meta if isinstance(d[key], MetaTensor) else {}
            pixel_size_nm = pixel_size_from_meta(meta)  # ImageJ calibration in nm, where known
            mask = np.where(probability > self.threshold, MASK_FOREGROUND, 0).astype(np.uint8)
            write_tiff_atomic(self.output_dir / f"{stem}{MASK_SUFFIX}", mask, pixel_size_nm)
            if self.save_probability:
                probability = probability.astype(np.float32)
                write_tiff_atomic(self.output_dir / f"{stem}{PROBABILITY_SUFFIX}", probability, pixel_size_nm)
        return d
