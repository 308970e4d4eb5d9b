"""The ignite glue of the block-streamed inference (``configs/inference_large.json``): an evaluator that hands
every input path to :class:`~rformer_monai.inference.MicrographAnalysis` and a handler that writes the run's
summary (on rank 0 under ``torchrun``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events
from monai.utils import ensure_tuple

from rformer_monai.inference.run_summary import write_run_summary
from rformer_monai.reports.tables import ECD_VALUES_KEY
from rformer_monai.workflows.batch import FAILED_SOURCE_KEY, TolerantEvaluator, describe_failure
from rformer_monai.workflows.errors import find_user_error
from rformer_monai.workflows.sharding import gather_to_main_rank

__all__ = ["RunSummaryHandler", "StreamingEvaluator"]

logger = logging.getLogger(__name__)


class StreamingEvaluator(TolerantEvaluator):
    """The streamed inference loop: every input of ``val_data_loader`` (items ``{"image": path}``) is analysed
    whole by ``analysis`` (:class:`MicrographAnalysis`), which reads and writes it block by block; the engine's
    output is the list of the images' summary rows. Inputs that fail are listed in ``failure_log`` and the run
    goes on, as in :class:`~rformer_monai.workflows.TolerantEvaluator`.

    Args:
        analysis: what to do with one input path.
        args, kwargs: those of :class:`~rformer_monai.workflows.TolerantEvaluator`.
    """

    def __init__(self, *args: Any, analysis: Callable[[str], dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.analysis = analysis

    def _iteration(self, engine: Engine, batchdata: dict) -> list[dict[str, Any]]:
        if isinstance(batchdata, dict) and FAILED_SOURCE_KEY in batchdata:
            return super()._iteration(engine, batchdata)
        sources = [str(source) for source in ensure_tuple(batchdata[self.source_key])]
        self.failure_log.count(len(sources))
        rows = []
        for source in sources:
            try:
                rows.append(self.analysis(source))
            except Exception as exc:  # one input must not stop the batch; the reason is recorded
                if find_user_error(exc) is None:
                    logger.warning("%s: unexpected error during inference", source, exc_info=exc)
                self.failure_log.record(source, describe_failure(source, exc))
        return rows


class RunSummaryHandler:
    """Write ``summary.csv`` and ``size_distribution.png`` (:func:`~rformer_monai.inference.run_summary.write_run_summary`) from
    the summary rows an evaluator's iterations return, when the run completes. Under ``torchrun`` it runs on every
    rank: the rows are gathered once every rank has finished and rank 0 writes the summary.

    Args:
        output_dir: folder of the summary.
    """

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Attach to an evaluator."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._summarise)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _collect(self, engine: Engine) -> None:
        self.rows.extend(row for row in engine.state.output or [] if ECD_VALUES_KEY in row)

    def _summarise(self, engine: Engine) -> None:
        rows = gather_to_main_rank(self.rows)  # under torchrun: every rank's rows, on rank 0 only
        if rows is None:
            return
        self.rows = sorted(rows, key=lambda row: str(row["stem"]))  # one order however the inputs were shared
        if not self.rows:
            logger.info("no new images analysed: run summary not rewritten")
            return
        write_run_summary(self.rows, [np.asarray(row[ECD_VALUES_KEY]) for row in self.rows], self.output_dir)
        count = sum(int(row["particle_count"]) for row in self.rows)
        logger.info("%d particles in %d images; summary in %s", count, len(self.rows), self.output_dir)
