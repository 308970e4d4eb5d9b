"""Sharing the bundle: ONNX export and inference, packing and safe fetching, metadata checks.

Command line: ``python -m rformer_monai.sharing {pack,fetch,onnx,check}`` (see ``docs/sharing.md``).
"""

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
    "FetchError",
    "OnnxRuntimeNetwork",
    "PackedBundle",
    "UnsafeArchiveError",
    "bundle_files",
    "check_metadata",
    "export_bundle_onnx",
    "export_onnx",
    "fetch_bundle",
    "metadata_problems",
    "pack_bundle",
    "read_checksum_file",
    "read_onnx_properties",
    "safe_extract",
]
