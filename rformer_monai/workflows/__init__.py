"""The glue the bundle wires together: ignite handlers (epoch log, overlays, particle analysis and instance
evaluation), training checkpoints, learning-rate schedules, reseeding, batch runs that survive bad inputs and
interruptions, the mask writer, settings checks, one-line user errors and the CPU allocator setting."""

from rformer_monai.folders import claim_output_folder, require_writable_folder
from rformer_monai.workflows.batch import (
    FailureLog,
    TolerantDataset,
    TolerantEvaluator,
    output_suffixes,
    pending_items,
)
from rformer_monai.workflows.checkpoints import (
    AtomicCheckpointWriter,
    BestModelSaver,
    ResumeFromCheckpoint,
    TrainingCheckpointSaver,
)
from rformer_monai.workflows.distributed import (
    BroadcastBuffers,
    ddp_device_ids,
    destroy_distributed,
    handlers_for_rank,
    init_distributed,
    local_device,
    local_rank,
    log_on_main_rank_only,
    main_rank_first,
    main_rank_result,
)
from rformer_monai.workflows.errors import (
    FailedInputsError,
    OutputFolderError,
    SettingsError,
    find_user_error,
    install_error_reporting,
)
from rformer_monai.workflows.handlers import EpochSummaryHandler, PredictionOverlayHandler
from rformer_monai.workflows.logs import keep_log_lines_apart
from rformer_monai.workflows.memory import keep_freed_buffers
from rformer_monai.workflows.particle_handlers import InstanceEvaluationHandler
from rformer_monai.workflows.reproducibility import ReseedEachEpoch, epoch_seed
from rformer_monai.workflows.runs import (
    LoadPretrainedWeights,
    new_run_folder,
    pretrained_weights,
    save_run_settings,
    training_recipe,
)
from rformer_monai.workflows.schedules import LR_SCHEDULES, learning_rate_scheduler
from rformer_monai.workflows.settings import as_bool, check_settings
from rformer_monai.workflows.sharding import gather_to_main_rank, rank_file, shard_items, world_size
from rformer_monai.workflows.streaming import RunSummaryHandler, StreamingEvaluator

__all__ = [
    "LR_SCHEDULES",
    "as_bool",
    "AtomicCheckpointWriter",
    "BestModelSaver",
    "BroadcastBuffers",
    "check_settings",
    "claim_output_folder",
    "ddp_device_ids",
    "destroy_distributed",
    "epoch_seed",
    "EpochSummaryHandler",
    "FailedInputsError",
    "FailureLog",
    "find_user_error",
    "gather_to_main_rank",
    "handlers_for_rank",
    "init_distributed",
    "install_error_reporting",
    "InstanceEvaluationHandler",
    "keep_freed_buffers",
    "keep_log_lines_apart",
    "learning_rate_scheduler",
    "LoadPretrainedWeights",
    "local_device",
    "local_rank",
    "log_on_main_rank_only",
    "main_rank_first",
    "main_rank_result",
    "new_run_folder",
    "output_suffixes",
    "OutputFolderError",
    "pending_items",
    "PredictionOverlayHandler",
    "pretrained_weights",
    "rank_file",
    "require_writable_folder",
    "ReseedEachEpoch",
    "ResumeFromCheckpoint",
    "RunSummaryHandler",
    "save_run_settings",
    "SettingsError",
    "shard_items",
    "StreamingEvaluator",
    "TolerantDataset",
    "TolerantEvaluator",
    "training_recipe",
    "TrainingCheckpointSaver",
    "world_size",
]
