"""MONAI transforms for SEM micrographs: loading, data-bar cropping, mask binarisation, pipelines."""

from rformer_monai.transforms.array import BinarizeMask, CropDataBar, LoadMicrograph
from rformer_monai.transforms.databar import detect_data_bar
from rformer_monai.transforms.dictionary import (
    BinarizeMaskd,
    CheckSameShaped,
    CropDataBard,
    LoadMicrographd,
)
from rformer_monai.transforms.io import (
    MaskShapeError,
    MicrographReader,
    MicrographReadError,
    pixel_size_from_meta,
    read_micrograph,
)
from rformer_monai.transforms.pipelines import (
    inference_transforms,
    intensity_transform,
    train_transforms,
    validation_transforms,
)

__all__ = [
    "BinarizeMask",
    "BinarizeMaskd",
    "CheckSameShaped",
    "CropDataBar",
    "CropDataBard",
    "LoadMicrograph",
    "LoadMicrographd",
    "MaskShapeError",
    "MicrographReadError",
    "MicrographReader",
    "detect_data_bar",
    "inference_transforms",
    "intensity_transform",
    "pixel_size_from_meta",
    "read_micrograph",
    "train_transforms",
    "validation_transforms",
]
