"""``segment()``: one micrograph in, its particles out, in memory, with the bundle's own settings.

    >>> from rformer_monai import segment
    >>> result = segment("micrograph.tif")          # or a 2-D numpy array, with pixel_size_nm=...
    >>> result.mask, result.labels                   # (H, W) bool, (H, W) int
    >>> result.particles["ECD_nm"]                   # one row per particle: the particle CSV's columns
    >>> result.pixel_size_nm, result.pixel_size_source

It runs the bundle's own analysis of one micrograph (``inference.json``'s ``analysis``: one source of settings and
one code path) into a temporary folder and reads the outputs back, so the mask is the bundle inference's
``<stem>_mask.tif`` and the table its ``<stem>_particles.csv``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from monai.bundle import ConfigParser

from rformer_monai.bundle_location import INFERENCE_CONFIG, find_bundle_root
from rformer_monai.files import MASK_SUFFIX
from rformer_monai.particles.imagej import table_rows
from rformer_monai.reports.summary import IMAGE_RECORD_SUFFIX, read_particle_csv
from rformer_monai.reports.tables import ECD_VALUES_KEY, LABELS_SUFFIX, PARTICLES_SUFFIX
from rformer_monai.reports.uncertainty import applicable_errors, range_columns

__all__ = ["Segmentation", "Segmenter", "segment"]

logger = logging.getLogger(__name__)

ARRAY_NAME = "array"
"""The stem of an image given as an array."""
TEXT_COLUMNS = ("pixel_size_source",)
"""Columns of the particle table that hold text."""


@dataclass
class Segmentation:
    """One micrograph's particles.

    Attributes:
        mask: (H, W) bool particle mask (the bundle's ``<stem>_mask.tif``).
        labels: (H, W) int instance labels, 0 background (``<stem>_labels.tif``).
        particles: column name -> 1-D array, one row per particle (``<stem>_particles.csv``'s columns).
        pixel_size_nm: the pixel size in nm, or None where unknown (sizes then in the ``_px`` columns).
        pixel_size_source: where it came from: the tag read (``zeiss``, ``fei``, ``imagej``, ``tiff_resolution``),
            ``given`` or ``unknown``.
        summary: the image's ``summary.csv`` row (counts, ECD statistics, area fraction, and the ranges of the
            true count and median ECD where the bundle's measured errors apply to the weights and settings).
        warnings: e.g. ``uncalibrated``.
    """

    mask: np.ndarray
    labels: np.ndarray
    particles: dict[str, np.ndarray]
    pixel_size_nm: float | None
    pixel_size_source: str
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of particles."""
        return int(len(self.particles["label"]))

    def rows(self) -> list[dict[str, Any]]:
        """The particle table as one dict per particle (``pandas.DataFrame(result.particles)`` also works)."""
        return table_rows(self.particles)

    def __repr__(self) -> str:
        unit = "px" if self.pixel_size_nm is None else "nm"
        median = self.summary.get("ecd_median", math.nan)
        return (
            f"Segmentation({self.count} particles, median ECD {median:.4g} {unit}, image {self.mask.shape[1]}x"
            f"{self.mask.shape[0]} px, pixel size {self.pixel_size_nm} nm ({self.pixel_size_source}))"
        )


class Segmenter:
    """The bundle's inference in memory, built once from its config and reused for many images.

    Args:
        bundle_root: the bundle folder; default :func:`rformer_monai.bundle_location.find_bundle_root`.
        weights: the trained weights (default the config's ``ckpt_path``, ``<bundle_root>/models/model.pt``).
        device: e.g. ``"cpu"`` or ``"cuda:0"`` (default the config's: a GPU where there is one).
        config_file: config files merged in order (default the bundle's ``configs/inference.json``).
        override: more ``{key: value}`` settings of the config (``"tta": "flips"``, ``"network_def#...": ...``).
    """

    def __init__(
        self,
        bundle_root: str | os.PathLike | None = None,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        config_file: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        override: Mapping[str, Any] | None = None,
    ) -> None:
        root = find_bundle_root(bundle_root)
        files = [root / INFERENCE_CONFIG] if config_file is None else config_file
        files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        parser = ConfigParser()
        parser.read_config([str(path) for path in files])
        parser["bundle_root"] = str(root)
        if weights is not None:
            parser["ckpt_path"] = str(weights)
        if device is not None:
            parser["device"] = f"$torch.device('{device}')"
        for key, value in (override or {}).items():
            parser[key] = value
        self.parser = parser
        self.analysis = parser.get_parsed_content("analysis")
        self.errors, reason = applicable_errors(root, parser.get_parsed_content("recorded_settings"))
        if self.errors is None:
            logger.info("no ranges for the true count and median ECD: %s", reason)

    def __call__(self, image: str | os.PathLike | np.ndarray, pixel_size_nm: float | None = None) -> Segmentation:
        """Segment one micrograph: a file path or a 2-D (H, W) array (grey values as stored).

        Args:
            image: the micrograph.
            pixel_size_nm: the pixel size in nm; overrides the file's metadata (source ``given``).

        Raises:
            ValueError: on an array that is not 2-D, a bad pixel size or an unreadable file.
        """
        if pixel_size_nm is not None and not (math.isfinite(float(pixel_size_nm)) and float(pixel_size_nm) > 0):
            raise ValueError(f"pixel_size_nm must be a positive number or None, got {pixel_size_nm!r}.")
        settings = {} if pixel_size_nm is None else {"pixel_size_nm": float(pixel_size_nm)}
        with tempfile.TemporaryDirectory(prefix="rformer-segment-") as folder:
            output_dir = Path(folder)
            if isinstance(image, (str, os.PathLike)):
                path = Path(image)
            else:
                array = np.asarray(image)
                if array.ndim != 2:
                    raise ValueError(f"image must be a file path or a 2-D (H, W) array, got shape {array.shape}.")
                path = output_dir / "input" / f"{ARRAY_NAME}.tif"
                path.parent.mkdir()
                tifffile.imwrite(path, array, resolution=None, metadata=None)
            summary = self.analysis(path, output_dir, **settings)
            stem = summary["stem"]
            record = json.loads((output_dir / f"{stem}{IMAGE_RECORD_SUFFIX}").read_text(encoding="utf-8"))
            mask = tifffile.imread(output_dir / f"{stem}{MASK_SUFFIX}") > 0
            labels = tifffile.imread(output_dir / f"{stem}{LABELS_SUFFIX}").astype(np.int64)
            particles = _typed_columns(read_particle_csv(output_dir / f"{stem}{PARTICLES_SUFFIX}"))
        summary.pop(ECD_VALUES_KEY)
        summary.update(range_columns(summary, self.errors))
        return Segmentation(
            mask=mask,
            labels=labels,
            particles=particles,
            pixel_size_nm=record["pixel_size_nm"],
            pixel_size_source=record["pixel_size_source"],
            summary=summary,
            warnings=list(record["warnings"]),
        )


def _typed_columns(columns: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """A particle CSV's columns of strings as arrays: ``label`` int, ``touches_edge`` bool, text columns as they
    are, the measurements float (an empty cell NaN)."""
    typed: dict[str, np.ndarray] = {}
    for name, cells in columns.items():
        if name == "label":
            typed[name] = np.asarray([int(cell) for cell in cells], dtype=np.int64)
        elif name == "touches_edge":
            typed[name] = np.asarray([cell.strip().lower() in ("true", "1") for cell in cells], dtype=bool)
        elif name in TEXT_COLUMNS:
            typed[name] = np.asarray(cells, dtype=object)
        else:
            typed[name] = np.asarray([float(cell) if cell else math.nan for cell in cells], dtype=np.float64)
    return typed


_SEGMENTERS: dict[str, Segmenter] = {}


def segment(
    image: str | os.PathLike | np.ndarray,
    pixel_size_nm: float | None = None,
    *,
    bundle_root: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    override: Mapping[str, Any] | None = None,
) -> Segmentation:
    """Segment one micrograph in memory with the bundle's network and settings (see the module docstring).

    The network is built once per set of arguments and kept for the next call.

    Args:
        image: a micrograph file (TIFF, PNG, JPEG, BMP) or a 2-D (H, W) array of grey values.
        pixel_size_nm: the pixel size in nm; by default read from the file's metadata (an array: unknown).
        bundle_root: the bundle folder (default: found beside the package, or ``$RFORMER_BUNDLE``).
        weights: trained weights (default the bundle's ``models/model.pt``).
        device: ``"cpu"``, ``"cuda:0"``, ... (default a GPU where there is one).
        override: more settings of ``inference.json`` by key.

    Returns:
        A :class:`Segmentation` (``.mask``, ``.labels``, ``.particles``, ``.pixel_size_nm``, ``.pixel_size_source``).
    """
    key = json.dumps([str(bundle_root), str(weights), str(device), dict(override or {})], sort_keys=True, default=str)
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = Segmenter(bundle_root, weights, device, override=override)
    return _SEGMENTERS[key](image, pixel_size_nm)
