"""MONAI transforms for SEM micrographs: loading, data-bar cropping, mask binarisation, pipelines."""

from rformer_monai.transforms.array import (
    BinarizeMask,
    CropDataBar,
    LabelParticles,
    LoadMicrograph,
    RelativeBorderProximity,
    SeparateParticles,
    SeparationWeight,
    StackSeparationTargets,
    separation_line_pairs,
    separation_lines,
)
from rformer_monai.transforms.databar import detect_data_bar
from rformer_monai.transforms.dictionary import (
    BinarizeMaskd,
    CheckSameShaped,
    CropDataBard,
    LabelParticlesd,
    LineWeightAndRelativeBorderd,
    LoadMicrographd,
    RelativeBorderProximityd,
    SeparateParticlesd,
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
    "CheckSameShaped",
    "CropDataBar",
    "CropDataBard",
    "LabelParticles",
    "LabelParticlesd",
    "LineWeightAndRelativeBorderd",
    "LoadMicrograph",
    "LoadMicrographd",
    "MaskShapeError",
    "MicrographReadError",
    "MicrographReader",
    "RelativeBorderProximity",
    "RelativeBorderProximityd",
    "SeparateParticles",
    "SeparateParticlesd",
    "SeparationWeight",
    "SeparationWeightd",
    "SplitSeparationd",
    "StackSeparationTargets",
    "detect_data_bar",
    "inference_transforms",
    "intensity_transform",
    "pixel_size_from_meta",
    "read_micrograph",
    "separation_line_pairs",
    "separation_lines",
    "train_transforms",
    "validation_transforms",
]
