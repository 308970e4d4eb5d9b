"""The ignite glue of the bundle's inference (``configs/inference.json``): an evaluator that hands every input
path to :class:`~rformer_monai.inference.MicrographAnalysis` and a handler that writes the run's summary from the
output folder (on rank 0 under ``torchrun``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.utils import ensure_tuple

from rformer_monai.reports.report_html import write_report
from rformer_monai.reports.run_record import write_run_record
from rformer_monai.reports.summary import write_folder_summary
from rformer_monai.reports.tables import ECD_VALUES_KEY
from rformer_monai.reports.uncertainty import applicable_errors
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
    """When the run completes, write ``summary.csv`` and the size distribution over every image in the output
    folder (:func:`~rformer_monai.reports.write_folder_summary`, from the per-image files, so that a resumed or
    sharded run's summary equals an uninterrupted one's), ``run.json`` (settings, weights, per-image records) and
    ``report.html``. The ranges of the true counts and median sizes are filled in where the bundle's measured
    errors apply to the run (:func:`~rformer_monai.reports.uncertainty.applicable_errors`). Under ``torchrun``
    it runs on every rank: after a barrier, rank 0 writes them.

    Args:
        output_dir: folder of the images' outputs and of the summary.
        settings: the run's settings, recorded in ``run.json`` (the bundle's ``settings`` and its
            ``particle_separation``).
        bundle_root: the bundle folder, for its version in ``run.json``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        settings: dict[str, Any] | None = None,
        bundle_root: str | os.PathLike | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.settings = dict(settings or {})
        self.bundle_root = bundle_root
        self.analysed = 0

    def attach(self, engine: Engine) -> None:
        """Attach to an evaluator."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._count)
        engine.add_event_handler(Events.COMPLETED, self._summarise)

    def _reset(self, engine: Engine) -> None:
        self.analysed = 0

    def _count(self, engine: Engine) -> None:
        self.analysed += sum(1 for row in engine.state.output or [] if ECD_VALUES_KEY in row)

    def _summarise(self, engine: Engine) -> None:
        counts = gather_to_main_rank([self.analysed])  # under torchrun: after every rank has written its images
        if counts is None:
            return
        errors, reason = applicable_errors(self.bundle_root, self.settings)
        summary = write_folder_summary(self.output_dir, errors)
        if not summary.images:
            logger.info("no image analysed: no run summary")
            return
        if errors is None:
            logger.info("no ranges for the true count and median ECD: %s", reason)
        else:
            logger.info("ranges for the true count and median ECD in summary.csv: %s", errors.describe())
        write_run_record(self.output_dir, self.settings, self.bundle_root, errors, reason)
        write_report(self.output_dir, errors, reason)
        count = sum(int(row["particle_count"]) for row in summary.images)
        logger.info(
            "%d particles in %d images (%d analysed in this run); summary.csv, report.html in %s",
            count, len(summary.images), sum(counts), self.output_dir,
        )
