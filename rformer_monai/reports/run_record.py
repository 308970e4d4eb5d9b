"""``run.json``: what produced a run's outputs (package and bundle versions, the weights' SHA-256, every
setting) and one record per image (size, pixel size and its source, counts, warnings, the contrast decision
where the pipeline makes one), so that a result can be traced and repeated."""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rformer_monai.bundle_location import METADATA_CONFIG
from rformer_monai.files import sha256_of, write_atomic
from rformer_monai.reports.summary import read_image_records
from rformer_monai.reports.uncertainty import MeasurementErrors

__all__ = ["RUN_RECORD_NAME", "write_run_record"]

logger = logging.getLogger(__name__)

RUN_RECORD_NAME = "run.json"


def _plain(value: Any) -> Any:
    """A setting as a JSON value (tensors, devices and paths as text)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _bundle(bundle_root: str | os.PathLike | None) -> dict[str, Any]:
    if bundle_root is None:
        return {}
    metadata_path = Path(bundle_root) / METADATA_CONFIG
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"root": str(Path(bundle_root).resolve())}
    return {"root": str(Path(bundle_root).resolve()), "name": metadata.get("name"), "version": metadata.get("version")}


def write_run_record(
    output_dir: str | os.PathLike,
    settings: Mapping[str, Any],
    bundle_root: str | os.PathLike | None = None,
    errors: MeasurementErrors | None = None,
    errors_reason: str = "",
) -> Path:
    """Write ``OUT/run.json`` for the images complete in ``output_dir``.

    Args:
        output_dir: the run's output folder.
        settings: the run's settings (the bundle's ``settings``); ``ckpt_path`` names the weights hashed.
        bundle_root: the bundle folder, for its name and version.
        errors: the measured errors behind ``summary.csv``'s ranges, where they apply.
        errors_reason: why no errors apply, where ``errors`` is None.

    Returns:
        The path written.
    """
    from rformer_monai import __version__

    weights: dict[str, Any] = {}
    checkpoint = settings.get("ckpt_path")
    if checkpoint and Path(str(checkpoint)).is_file():
        weights = {"path": str(Path(str(checkpoint)).resolve()), "sha256": sha256_of(str(checkpoint))}
    record = {
        "rformer_monai_version": __version__,
        "bundle": _bundle(bundle_root),
        "weights": weights,
        "settings": _plain(dict(settings)),
        "measurement_errors": (
            {"applied": True, **errors.to_metadata()} if errors is not None else {"applied": False, "reason": errors_reason}
        ),
        "python": platform.python_version(),
        "images": read_image_records(output_dir),
    }
    text = json.dumps(record, indent=2, default=str)
    return write_atomic(Path(output_dir) / RUN_RECORD_NAME, lambda temporary: temporary.write_text(text, encoding="utf-8"))
