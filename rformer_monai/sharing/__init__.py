"""Sharing the bundle: ONNX export and inference, packing and safe fetching, metadata checks, data-parallel training.

Command line: ``python -m rformer_monai.sharing {pack,fetch,onnx,check}`` (see ``docs/sharing.md``).
"""

from rformer_monai.sharing.batch_inference import gather_to_main_rank, rank_file, shard_items, world_size
from rformer_monai.sharing.distributed import (
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
from rformer_monai.sharing.metadata import check_metadata, metadata_problems
from rformer_monai.sharing.onnx import (
    OnnxRuntimeNetwork,
    export_bundle_onnx,
    export_onnx,
    read_onnx_properties,
)
from rformer_monai.sharing.package import (
    FetchError,
    PackedBundle,
    UnsafeArchiveError,
    bundle_files,
    fetch_bundle,
    pack_bundle,
    read_checksum_file,
    safe_extract,
)

__all__ = [
    "BroadcastBuffers",
    "FetchError",
    "OnnxRuntimeNetwork",
    "PackedBundle",
    "UnsafeArchiveError",
    "bundle_files",
    "check_metadata",
    "ddp_device_ids",
    "destroy_distributed",
    "export_bundle_onnx",
    "export_onnx",
    "fetch_bundle",
    "gather_to_main_rank",
    "handlers_for_rank",
    "init_distributed",
    "local_device",
    "local_rank",
    "log_on_main_rank_only",
    "main_rank_first",
    "main_rank_result",
    "metadata_problems",
    "pack_bundle",
    "rank_file",
    "read_checksum_file",
    "read_onnx_properties",
    "safe_extract",
    "shard_items",
    "world_size",
]
