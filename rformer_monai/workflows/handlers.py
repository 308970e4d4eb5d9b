"""Ignite handlers for the bundle's workflows: a clear log line per epoch (with a CSV history for learning
curves) and overlay pictures of predictions against ground truth."""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from rformer_monai.reports.figures import save_prediction_overlay

logger = logging.getLogger("rformer_monai.training")

HISTORY_COLUMNS = ("epoch", "train_loss", "val_metric", "seconds")


class EpochSummaryHandler:
    """Log one line per epoch (epoch, mean training loss, latest and best validation metric, time) and,
    with ``history_path``, append the same numbers to a CSV for learning curves.

    Args:
        evaluator: the validation evaluator whose key metric is reported (optional).
        loss_key: key of the loss in the trainer's per-iteration output.
        history_path: CSV file of the per-epoch history (optional; rewritten when training starts
            at epoch 0, continued from the resumed epoch when resuming).
    """

    def __init__(
        self, evaluator: Engine | None = None, loss_key: str = "loss", history_path: str | os.PathLike | None = None
    ) -> None:
        self.evaluator = evaluator
        self.loss_key = loss_key
        self.history_path = Path(history_path) if history_path else None
        self._losses: list[float] = []
        self._epoch_start = 0.0
        self._history_open = False

    def attach(self, engine: Engine) -> None:
        """Attach to the trainer."""
        engine.add_event_handler(Events.STARTED, self._await_first_epoch)
        engine.add_event_handler(Events.EPOCH_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log)

    def _await_first_epoch(self, engine: Engine) -> None:
        self._history_open = False

    def _open_history(self, first_epoch: int) -> None:
        """Start the CSV afresh, keeping the rows before ``first_epoch``: none for a new run; for a resumed
        one, those up to its checkpoint (rows written after it would otherwise appear twice)."""
        kept_rows: list[list[str]] = []
        if first_epoch > 1 and self.history_path.exists():
            with self.history_path.open(newline="") as handle:
                kept_rows = [row for row in list(csv.reader(handle))[1:] if int(row[0]) < first_epoch]
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HISTORY_COLUMNS)
            writer.writerows(kept_rows)
        self._history_open = True

    def _start(self, engine: Engine) -> None:
        # the history is opened here, not when the run starts: a resumed run knows its epoch only after
        # its checkpoint is loaded, which may happen in a STARTED handler attached after this one
        if self.history_path is not None and not self._history_open:
            self._open_history(engine.state.epoch)
        self._losses = []
        self._epoch_start = time.perf_counter()

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        outputs = output if isinstance(output, list) else [output]
        if outputs and isinstance(outputs[0], dict) and self.loss_key in outputs[0]:
            self._losses.append(float(outputs[0][self.loss_key]))

    def _log(self, engine: Engine) -> None:
        mean_loss = sum(self._losses) / max(len(self._losses), 1)
        seconds = time.perf_counter() - self._epoch_start
        parts = [f"epoch {engine.state.epoch}/{engine.state.max_epochs}", f"train loss {mean_loss:.4f}"]
        latest = None
        state = getattr(self.evaluator, "state", None)
        if state is not None and getattr(state, "key_metric_name", None) and state.epoch == engine.state.epoch:
            name = state.key_metric_name
            latest = state.metrics.get(name)
            if latest is not None:
                parts.append(f"{name} {latest:.4f}")
            parts.append(f"best {state.best_metric:.4f} (epoch {state.best_metric_epoch})")
        parts.append(f"{seconds:.1f} s")
        logger.info(" | ".join(parts))
        if self.history_path is not None:
            with self.history_path.open("a", newline="") as handle:
                csv.writer(handle).writerow(
                    [engine.state.epoch, f"{mean_loss:.6f}", "" if latest is None else f"{latest:.6f}", f"{seconds:.2f}"]
                )


def _plane(value: torch.Tensor | np.ndarray) -> np.ndarray:
    array = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array[0]


class PredictionOverlayHandler:
    """Save overlay PNGs (see :func:`save_prediction_overlay`) of the first ``max_images`` images an evaluator sees.

    Expects per-sample dicts in ``engine.state.output`` holding ``image``, ``pred`` (probabilities) and
    optionally ``label``, each (1, H, W).

    Args:
        output_dir: folder of the PNGs, named ``<stem>_overlay.png``.
        max_images: how many images to draw.
        threshold: probability above which a pixel is particle.
    """

    def __init__(self, output_dir: str | os.PathLike, max_images: int = 3, threshold: float = 0.5) -> None:
        self.output_dir = Path(output_dir)
        self.max_images = max_images
        self.threshold = threshold
        self._saved = 0

    def attach(self, engine: Engine) -> None:
        """Attach to an evaluator."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._draw)

    def _reset(self, engine: Engine) -> None:
        self._saved = 0

    def _draw(self, engine: Engine) -> None:
        for sample in engine.state.output:
            if self._saved >= self.max_images:
                return
            prediction = _plane(sample["pred"]) > self.threshold
            truth = _plane(sample["label"]) > 0 if "label" in sample else None
            image = sample["image"]
            name = image.meta.get("filename_or_obj", f"image_{self._saved}") if isinstance(image, MetaTensor) else ""
            stem = Path(str(name)).stem or f"image_{self._saved}"
            save_prediction_overlay(self.output_dir / f"{stem}_overlay.png", _plane(image), prediction, truth)
            self._saved += 1
