"""Workflow pieces the bundle wires together: weight loading, resuming, epoch logging, output writing."""

from rformer_monai.engines.checkpoints import (
    CheckpointError,
    ResumeFromCheckpoint,
    TrainingCheckpointSaver,
    load_weights,
    read_checkpoint,
)
from rformer_monai.engines.handlers import EpochSummaryHandler, PredictionOverlayHandler, save_prediction_overlay
from rformer_monai.engines.writers import SaveMaskd, write_tiff_atomic

__all__ = [
    "CheckpointError",
    "EpochSummaryHandler",
    "PredictionOverlayHandler",
    "ResumeFromCheckpoint",
    "SaveMaskd",
    "TrainingCheckpointSaver",
    "load_weights",
    "read_checkpoint",
    "save_prediction_overlay",
    "write_tiff_atomic",
]
