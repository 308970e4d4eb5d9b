"""MONAI transforms for SEM micrographs: loading, data-bar cropping, mask binarisation, pipelines."""

from rformer_monai.transforms.array import (
    BinarizeMask,
    BorderProximity,
    CropDataBar,
    LoadMicrograph,
    RelativeBorderProximity,
    SeparationBand,
    SeparationWeight,
    StackSeparationTargets,
    separation_lines,
)
from rformer_monai.transforms.databar import detect_data_bar
from rformer_monai.transforms.dictionary import (
    BinarizeMaskd,
    BorderProximityd,
    CheckSameShaped,
    CropDataBard,
    LineWeightAndRelativeBorderd,
    LoadMicrographd,
    RelativeBorderProximityd,
    SeparationBandd,
    SeparationWeightd,
    SplitSeparationd,
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
    "BorderProximity",
    "BorderProximityd",
    "CheckSameShaped",
    "CropDataBar",
    "CropDataBard",
    "LineWeightAndRelativeBorderd",
    "LoadMicrograph",
    "LoadMicrographd",
    "MaskShapeError",
    "MicrographReadError",
    "MicrographReader",
    "RelativeBorderProximity",
    "RelativeBorderProximityd",
    "SeparationBand",
    "SeparationBandd",
    "SeparationWeight",
    "SeparationWeightd",
    "SplitSeparationd",
    "StackSeparationTargets",
    "detect_data_bar",
    "inference_transforms",
    "intensity_transform",
    "pixel_size_from_meta",
    "read_micrograph",
    "separation_lines",
    "train_transforms",
    "validation_transforms",
]
