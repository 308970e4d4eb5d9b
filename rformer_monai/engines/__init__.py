"""Workflow pieces the bundle wires together: weight loading, resuming, learning-rate schedules, epoch logging,
output writing, batch runs that survive bad inputs and interruptions, one-line user errors."""

from rformer_monai.engines.allocator import keep_freed_buffers
from rformer_monai.engines.checkpoints import (
    AtomicCheckpointWriter,
    BestModelSaver,
    CheckpointError,
    ResumeFromCheckpoint,
    TrainingCheckpointSaver,
    load_weights,
    read_checkpoint,
)
from rformer_monai.engines.errors import (
    FailedInputsError,
    SettingsError,
    find_user_error,
    install_error_reporting,
)
from rformer_monai.engines.handlers import (
    EpochSummaryHandler,
    PredictionOverlayHandler,
    save_prediction_overlay,
)
from rformer_monai.engines.reproducibility import ReseedEachEpoch, epoch_seed
from rformer_monai.engines.robust import (
    FailureLog,
    TolerantDataset,
    TolerantEvaluator,
    output_suffixes,
    pending_items,
)
from rformer_monai.engines.runs import (
    LoadPretrainedWeights,
    new_run_folder,
    pretrained_weights,
    save_run_settings,
    training_recipe,
)
from rformer_monai.engines.schedules import LR_SCHEDULES, learning_rate_scheduler
from rformer_monai.engines.settings import as_bool, check_settings
from rformer_monai.engines.writers import SaveMaskd, write_atomic, write_tiff_atomic

__all__ = [
    "LR_SCHEDULES",
    "AtomicCheckpointWriter",
    "BestModelSaver",
    "CheckpointError",
    "EpochSummaryHandler",
    "FailedInputsError",
    "FailureLog",
    "LoadPretrainedWeights",
    "PredictionOverlayHandler",
    "ReseedEachEpoch",
    "ResumeFromCheckpoint",
    "SaveMaskd",
    "SettingsError",
    "TolerantDataset",
    "TolerantEvaluator",
    "TrainingCheckpointSaver",
    "as_bool",
    "check_settings",
    "epoch_seed",
    "find_user_error",
    "install_error_reporting",
    "keep_freed_buffers",
    "learning_rate_scheduler",
    "load_weights",
    "new_run_folder",
    "output_suffixes",
    "pending_items",
    "pretrained_weights",
    "read_checkpoint",
    "save_prediction_overlay",
    "save_run_settings",
    "training_recipe",
    "write_atomic",
    "write_tiff_atomic",
]
