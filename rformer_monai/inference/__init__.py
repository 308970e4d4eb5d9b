"""The bundle's inference: micrographs of any size prepared, segmented and analysed in blocks streamed from and
to disk, and test-time augmentation. ``python -m rformer_monai.inference`` runs it with a bundle's network."""

from rformer_monai.inference.blocks import (
    DEFAULT_BLOCK_SIZE,
    Block,
    IntensityStatistics,
    data_bar_rows,
    intensity_statistics,
    iter_block_probabilities,
    normalise_block,
    plan_blocks,
    predict_outputs,
    predict_probability,
    segment_large_micrograph,
    stitching_options,
    window_stride,
)
from rformer_monai.inference.bundle import BundleInference, load_bundle_inference
from rformer_monai.inference.particle_blocks import RawPlane, stitched_particles
from rformer_monai.inference.preparation import PreparedMicrograph, prepare_micrograph
from rformer_monai.inference.streaming import MicrographAnalysis, analyse_micrograph
from rformer_monai.inference.tta import TTA_MODES, DihedralTTA, with_tta

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "TTA_MODES",
    "Block",
    "BundleInference",
    "DihedralTTA",
    "IntensityStatistics",
    "MicrographAnalysis",
    "PreparedMicrograph",
    "RawPlane",
    "analyse_micrograph",
    "data_bar_rows",
    "intensity_statistics",
    "iter_block_probabilities",
    "load_bundle_inference",
    "normalise_block",
    "plan_blocks",
    "predict_outputs",
    "predict_probability",
    "prepare_micrograph",
    "segment_large_micrograph",
    "stitched_particles",
    "stitching_options",
    "window_stride",
    "with_tta",
]
