"""Ignite handler that fills a :class:`SegmentationReport` from a MONAI evaluator."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import MetaTensor, decollate_batch

from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD, SegmentationReport

logger = logging.getLogger(__name__)

__all__ = ["CONFUSION_MATRIX_PNG_NAME", "SegmentationReportHandler"]

CONFUSION_MATRIX_PNG_NAME: str = "confusion_matrix.png"
SINGLE_CHANNEL: int = 1
"""``pred`` and ``label`` hold one channel: the particle probability / mask."""
MAIN_RANK: int = 0
"""The rank that writes files under ``torch.distributed``."""


def _to_numpy(value: Any, key: str) -> np.ndarray:
    """Detach a tensor/MetaTensor (any device, any float dtype) or array into numpy."""
    if isinstance(value, MetaTensor):
        value = value.as_tensor()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise ValueError(f"engine.state.output[...][{key!r}] must be a tensor or array, got {type(value).__name__}.")


def _distributed_world() -> tuple[int, int]:
    """Return (rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return MAIN_RANK, 1


class SegmentationReportHandler:
    """Fill a :class:`SegmentationReport` from a MONAI ``SupervisedEvaluator`` and write it.

    Contract on ``engine.state.output`` after each iteration: a list of per-sample dicts (what
    MONAI evaluators give with ``decollate=True``; a dict of batched tensors is decollated
    here), each holding

    * ``prob_key``: tensor/MetaTensor/array of shape ``(1, H, W)`` (or ``(1, H, W, D)``) with
      particle PROBABILITIES in [0, 1], i.e. after ``Activationsd(sigmoid=True)`` and before
      any ``AsDiscreted`` (the handler thresholds at ``threshold`` itself);
    * ``label_key``: binary mask of the same shape.

    The image name is the stem of ``pred.meta[name_key]`` (then ``label.meta[name_key]``)
    and falls back to ``f"image_{index}"``, ``index`` counting samples from 0 in this run.

    A fresh report is started on ``STARTED`` (so each validation run is reported alone). On
    ``COMPLETED`` the per-rank reports are gathered when ``torch.distributed`` is
    initialised, rank 0 writes ``metrics.json``, ``metrics.csv`` (see
    :meth:`SegmentationReport.write`) and ``confusion_matrix.png`` into ``output_dir`` and
    logs the pooled Dice. The report is kept as ``self.report`` and
    ``engine.state.segmentation_report``.

    Args:
        output_dir: folder for the metric files (created if needed).
        threshold: probability at or above which a pixel is particle.
        prob_key: key of the probability map in each sample dict.
        label_key: key of the ground-truth mask in each sample dict.
        name_key: metadata key holding the image's file name.
        plot: also write ``confusion_matrix.png``.
    """

    def __init__(
        self,
        output_dir: str | Path,
        threshold: float = DEFAULT_THRESHOLD,
        prob_key: str = "pred",
        label_key: str = "label",
        name_key: str = "filename_or_obj",
        plot: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.prob_key = prob_key
        self.label_key = label_key
        self.name_key = name_key
        self.plot = plot
        self.report = SegmentationReport(threshold=threshold)
        self.written: dict[str, Path] = {}
        self._sample_index = 0

    def attach(self, engine: Engine) -> None:
        """Register the handler's event callbacks on ``engine``.

        Args:
            engine: an ignite engine, typically a MONAI ``SupervisedEvaluator``.
        """
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        """Start a fresh report for this run."""
        self.report = SegmentationReport(threshold=self.threshold)
        self.written = {}
        self._sample_index = 0
        engine.state.segmentation_report = self.report

    def _sample_name(self, sample: Mapping[str, Any]) -> str:
        for key in (self.prob_key, self.label_key):
            meta = getattr(sample.get(key), "meta", None)
            file_name = meta.get(self.name_key) if isinstance(meta, Mapping) else None
            if isinstance(file_name, Sequence) and not isinstance(file_name, str) and len(file_name) == 1:
                file_name = file_name[0]
            if file_name:
                return Path(str(file_name)).stem
        return f"image_{self._sample_index}"

    def iteration_completed(self, engine: Engine) -> None:
        """Add every sample of ``engine.state.output`` to the report."""
        output = engine.state.output
        if output is None:
            return
        samples = decollate_batch(output) if isinstance(output, Mapping) else output
        for sample in samples:
            if not isinstance(sample, Mapping) or self.prob_key not in sample or self.label_key not in sample:
                found = list(sample) if isinstance(sample, Mapping) else type(sample).__name__
                raise ValueError(
                    f"engine.state.output samples must be dicts with keys {self.prob_key!r} and "
                    f"{self.label_key!r}, got {found}."
                )
            probability = _to_numpy(sample[self.prob_key], self.prob_key)
            target = _to_numpy(sample[self.label_key], self.label_key)
            if probability.ndim < 2 or probability.shape[0] != SINGLE_CHANNEL:
                raise ValueError(
                    f"{self.prob_key!r} must have shape (1, H, W) holding the particle probability, "
                    f"got {tuple(probability.shape)}: keep only the particle channel in post transforms."
                )
            self.report.add(self._sample_name(sample), probability, target)
            self._sample_index += 1

    def completed(self, engine: Engine) -> None:
        """Gather across ranks, then on rank 0 write the report and log the pooled Dice."""
        rank, world_size = _distributed_world()
        if world_size > 1:
            gathered: list[SegmentationReport | None] = [None] * world_size
            dist.all_gather_object(gathered, self.report)
            if rank != MAIN_RANK:
                return
            merged = SegmentationReport(threshold=self.threshold)
            for report in gathered:
                if report is not None:
                    merged.merge(report)
            self.report = merged
            engine.state.segmentation_report = merged
        if rank != MAIN_RANK:
            return
        if len(self.report) == 0:
            logger.warning("No image reached the segmentation report: nothing written to %s.", self.output_dir)
            return
        self.written = self.report.write(self.output_dir)
        if self.plot:
            self.written["png"] = self.report.plot_confusion_matrix(self.output_dir / CONFUSION_MATRIX_PNG_NAME)
        pooled = self.report.pooled()
        logger.info(
            "Pooled Dice %.4f over %d images (mean %.4f +/- %.4f); metrics in %s",
            pooled["dice"],
            pooled["num_images"],
            pooled["mean"]["dice"],
            pooled["std"]["dice"],
            self.output_dir,
        )
