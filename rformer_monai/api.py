"""``segment()``: one micrograph in, its particles out, in memory, with the bundle's own settings.

    >>> from rformer_monai import segment
    >>> result = segment("micrograph.tif")          # or a 2-D numpy array, with pixel_size_nm=...
    >>> result.mask, result.labels                   # (H, W) bool, (H, W) int
    >>> result.particles["ECD_nm"]                   # one row per particle: the particle CSV's columns
    >>> result.pixel_size_nm, result.pixel_size_source

The network, the transforms, the sliding window, the threshold and the particle step are all built from the
bundle's ``inference.json`` (one source of settings), so the mask equals the bundle inference's
``<stem>_mask.tif`` and the table its ``<stem>_particles.csv``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from rformer_monai.bundle_location import INFERENCE_CONFIG, find_bundle_root
from rformer_monai.particles.imagej import table_rows
from rformer_monai.reports.summary import image_summary
from rformer_monai.transforms.io import Micrograph, read_micrograph
from rformer_monai.workflows.masks import SaveMaskd

__all__ = ["Segmentation", "Segmenter", "segment"]

ARRAY_NAME = "array"
"""``filename_or_obj`` of an image given as an array."""


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
        summary: the image's ``summary.csv`` row (counts, ECD statistics, area fraction).
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
        self.device = parser.get_parsed_content("device")
        self.amp = bool(parser.get_parsed_content("amp"))
        self.threshold = float(parser.get_parsed_content("threshold"))
        self.network = parser.get_parsed_content("network").eval()
        self.inferer = parser.get_parsed_content("inferer")
        postprocessing = parser.get_parsed_content("postprocessing")
        postprocessing.transforms = tuple(step for step in postprocessing.transforms if not isinstance(step, SaveMaskd))
        self.postprocessing = postprocessing
        self.particle_analysis = parser.get_parsed_content("particle_analysis")
        self.preprocessing = parser.get_parsed_content("preprocessing")  # the instance Invertd inverts

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
        if isinstance(image, (str, os.PathLike)):
            item = read_micrograph(image, pixel_size_nm=pixel_size_nm)
            item.meta["filename_or_obj"] = str(image)
            raw, stem = item.array, Path(image).stem
        else:
            raw = np.asarray(image)
            if raw.ndim != 2:
                raise ValueError(f"image must be a file path or a 2-D (H, W) array, got shape {raw.shape}.")
            meta = {
                "filename_or_obj": ARRAY_NAME,
                "pixel_size_nm": math.nan if pixel_size_nm is None else float(pixel_size_nm),
                "pixel_size_source": "unknown" if pixel_size_nm is None else "given",
                "colour_conversion": "none",
                "source_dtype": str(raw.dtype),
                "source_max": float(np.iinfo(raw.dtype).max) if np.issubdtype(raw.dtype, np.integer) else 1.0,
            }
            item, stem = Micrograph(raw, meta), ARRAY_NAME
        sample = self.preprocessing({"image": item})
        batch = sample["image"].unsqueeze(0).to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.amp):
            logits = self.inferer(batch, self.network)
        prediction = logits[0].float().cpu()
        if not isinstance(prediction, MetaTensor):
            prediction = MetaTensor(prediction)
        prediction.meta = dict(sample["image"].meta)
        sample["pred"] = prediction
        sample = self.postprocessing(sample)
        probability = sample["pred"].detach().cpu().float().numpy()[0]
        analysis = self.particle_analysis.analyse(sample, image=raw)
        record = {
            "stem": stem,
            "unit": analysis.pixel_size.unit,
            "pixel_size_nm": analysis.pixel_size.nm,
            "pixel_size_source": analysis.pixel_size.source,
            "sample_area": analysis.sample_area,
        }
        summary = image_summary(analysis.table, record)
        summary.pop("ecd_values")
        return Segmentation(
            mask=probability > self.threshold,
            labels=analysis.labels.astype(np.int64),
            particles=analysis.table,
            pixel_size_nm=analysis.pixel_size.nm,
            pixel_size_source=analysis.pixel_size.source,
            summary=summary,
            warnings=analysis.warnings,
        )


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
