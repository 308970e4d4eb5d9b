"""Offline check of a bundle's ``metadata.json`` against the MONAI Bundle specification.

``python -m monai.bundle verify_metadata`` validates against the JSON schema named by the file's ``schema``
key, which it downloads; this check needs no network. It holds the keys the schema requires
(``meta_schema_20240725.json``, the one our metadata names) and the tensor-format fields the specification
lists for every entry of ``network_data_format``. The specification's text still names
``optional_packages_version`` as mandatory; the schema replaced it with ``required_packages_version``, and MONAI's
config parser renames the old key to the new one when it reads metadata (overwriting the new one), so the old key
is reported as a problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

REQUIRED_KEYS = {
    "schema": str,
    "version": str,
    "monai_version": str,
    "pytorch_version": str,
    "numpy_version": str,
    "required_packages_version": dict,
    "task": str,
    "description": str,
    "authors": str,
    "copyright": str,
    "network_data_format": dict,
}
"""Top-level keys the bundle metadata schema (meta_schema_20240725.json) requires, with their JSON types."""

DEPRECATED_KEYS = {"optional_packages_version": "required_packages_version"}
"""Keys MONAI renames when it reads metadata (``monai.bundle.utils.DEPRECATED_ID_MAPPING``), with their successors."""

TENSOR_FIELDS = {
    "type": str,
    "format": str,
    "modality": str,
    "num_channels": int,
    "spatial_shape": list,
    "dtype": str,
    "value_range": list,
    "is_patch_data": bool,
    "channel_def": dict,
}
"""Fields of a tensor format specifier in ``network_data_format`` (the specification's "at least these keys")."""

NETWORK_IO_KEYS = ("inputs", "outputs")


def metadata_problems(metadata: Mapping) -> list[str]:
    """What keeps ``metadata`` from meeting the bundle specification: one line per problem, empty when it does."""
    problems = []
    for key, kind in REQUIRED_KEYS.items():
        if key not in metadata:
            problems.append(f"missing key {key!r}")
        elif not isinstance(metadata[key], kind):
            problems.append(f"{key!r} must be of type {kind.__name__}, got {type(metadata[key]).__name__}")
    for old, new in DEPRECATED_KEYS.items():
        if old in metadata:
            problems.append(f"deprecated key {old!r}: MONAI overwrites {new!r} with it when reading; merge the two")
    network_format = metadata.get("network_data_format")
    if not isinstance(network_format, Mapping):
        return problems
    for io_key in NETWORK_IO_KEYS:
        tensors = network_format.get(io_key)
        if not isinstance(tensors, Mapping) or not tensors:
            problems.append(f"network_data_format needs a non-empty {io_key!r} dictionary")
            continue
        for name, tensor in tensors.items():
            where = f"network_data_format#{io_key}#{name}"
            if not isinstance(tensor, Mapping):
                problems.append(f"{where} must be a dictionary of tensor fields")
                continue
            for field, kind in TENSOR_FIELDS.items():
                if field not in tensor:
                    problems.append(f"{where}: missing field {field!r}")
                elif not isinstance(tensor[field], kind) or (kind is int and isinstance(tensor[field], bool)):
                    found = type(tensor[field]).__name__
                    problems.append(f"{where}#{field} must be of type {kind.__name__}, got {found}")
            value_range = tensor.get("value_range")
            if isinstance(value_range, list) and len(value_range) not in (0, 2):
                problems.append(f"{where}#value_range must be [] or [min, max], got {value_range}")
    return problems


def check_metadata(path: str | os.PathLike) -> dict:
    """Read a ``metadata.json`` and return it.

    Raises:
        ValueError: naming the file and every problem :func:`metadata_problems` finds.
    """
    path = Path(path)
    try:
        metadata = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file: {exc}") from exc
    problems = metadata_problems(metadata)
    if problems:
        raise ValueError(f"{path} does not meet the MONAI bundle specification: " + "; ".join(problems))
    return metadata
