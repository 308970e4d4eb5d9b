"""Batch inference that never loses work.

- :func:`pending_items` drops the inputs whose outputs are all written (outputs are written atomically,
  so a file that exists is complete): rerunning a killed run finishes the rest; ``overwrite`` redoes all.
- :class:`TolerantDataset` turns an input that cannot be loaded (an empty, truncated or foreign file)
  into a failure record instead of an exception, in the main process or in a worker.
- :class:`TolerantEvaluator` (a ``SupervisedEvaluator``) skips those records, and inputs whose inference
  fails, listing each in a :class:`FailureLog` (``OUT/failed.csv`` and the log) and going on with the next.
- :meth:`FailureLog.raise_if_failed`, run after the evaluator, ends the run with an error
  "N of M images failed, see OUT/failed.csv" so that scripts see a non-zero exit status.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monai.data import Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.utils import ensure_tuple

from rformer_monai.data.discovery import DatasetLayoutError
from rformer_monai.files import (
    MASK_SUFFIX,
    PROBABILITY_SUFFIX,
    output_stem,
    partial_writes,
    write_atomic,
)
from rformer_monai.folders import claim_output_folder, require_writable_folder
from rformer_monai.workflows.errors import (
    FailedInputsError,
    describe_error,
    find_user_error,
    one_line,
)
from rformer_monai.workflows.settings import as_bool

logger = logging.getLogger(__name__)

SOURCE_KEY = "image"
FAILED_SOURCE_KEY = "failed_source"
FAILED_REASON_KEY = "failed_reason"
FAILED_CSV_NAME = "failed.csv"
FAILED_CSV_COLUMNS = ("image", "reason")


def output_suffixes(save_probability: bool | str = False, extra: Sequence[str] = ()) -> list[str]:
    """The files inference writes for every input, as suffixes of ``OUT/<stem>``: the mask, the probability
    map where ``save_probability`` is set, then ``extra`` (e.g. particle-analysis outputs)."""
    suffixes = [MASK_SUFFIX]
    if as_bool(save_probability, "save_probability"):
        suffixes.append(PROBABILITY_SUFFIX)
    return suffixes + [suffix for suffix in extra if suffix not in suffixes]


def expected_outputs(source: str | os.PathLike, output_dir: str | os.PathLike, suffixes: Sequence[str]) -> list[Path]:
    """The output files of the input ``source``: ``output_dir/<stem><suffix>`` for every suffix."""
    stem = output_stem(source)
    return [Path(output_dir) / f"{stem}{suffix}" for suffix in suffixes]


def _is_earlier_output(path: Path, output_dir: Path, suffixes: Sequence[str]) -> bool:
    return path.parent.resolve() == output_dir.resolve() and path.name.endswith(tuple(suffixes))


def pending_items(
    datalist: Sequence[dict],
    output_dir: str | os.PathLike,
    suffixes: Sequence[str],
    overwrite: bool | str = False,
    source_key: str = SOURCE_KEY,
    claim: bool = True,
) -> list[dict]:
    """The inputs that still need inference: those missing any of their outputs, or all with ``overwrite``.

    Outputs are written atomically, so an output file that exists is complete. Files in ``output_dir`` that
    look like outputs (a name ending in one of ``suffixes``) are outputs of an earlier run, not inputs,
    and are left out. Temporary files that a killed run left for the pending outputs are removed, after
    :func:`~rformer_monai.workflows.claim_output_folder` has locked the folder: no other run can be writing them.

    Args:
        datalist: ``[{"image": path}, ...]``.
        output_dir: the output folder.
        suffixes: the output files of every input (see :func:`output_suffixes`).
        overwrite: redo inputs whose outputs exist.
        source_key: the key of the input path in each item.
        claim: lock the folder and remove the leftovers; False (the other ranks of a ``torchrun`` batch, whose
            rank 0 claims the folder) only checks that it is writable.

    Raises:
        DatasetLayoutError: two inputs would write the same output file (same name in two folders).
        OutputFolderError: the folder cannot be written, or another run is writing into it.
    """
    # no other run writes there while its leftovers are removed
    output_dir = claim_output_folder(output_dir) if claim else require_writable_folder(output_dir)
    overwrite = as_bool(overwrite, "overwrite")
    if not suffixes:
        raise ValueError("suffixes must name at least one output file, got none.")
    inputs = [item for item in datalist if not _is_earlier_output(Path(item[source_key]), output_dir, suffixes)]
    if len(inputs) < len(datalist):
        earlier = len(datalist) - len(inputs)
        logger.info("%d files in %s are outputs of an earlier run: not taken as inputs", earlier, output_dir)
    writers: dict[str, str] = {}
    for item in inputs:
        stem, source = output_stem(item[source_key]), str(item[source_key])
        if stem in writers:
            raise DatasetLayoutError(
                f"{writers[stem]} and {source} would both be written to {output_dir / (stem + suffixes[0])}: "
                "rename one of them or run their folders separately"
            )
        writers[stem] = source
    pending = []
    for item in inputs:
        outputs = expected_outputs(item[source_key], output_dir, suffixes)
        if overwrite or not all(path.is_file() for path in outputs):
            pending.append(item)
            for path in outputs if claim else ():
                for leftover in partial_writes(path):
                    leftover.unlink(missing_ok=True)
    done = len(inputs) - len(pending)
    if inputs and not pending:
        logger.info("all %d inputs already have their outputs in %s: nothing to do", done, output_dir)
    elif done:
        logger.info(
            "%d of %d inputs already have all their outputs in %s: skipped (--overwrite true redoes them)",
            done,
            len(inputs),
            output_dir,
        )
    return pending


def failure_record(source: str, exc: BaseException) -> dict[str, str]:
    """The item that stands for an input that could not be loaded: its path and why, on one line."""
    return {FAILED_SOURCE_KEY: str(source), FAILED_REASON_KEY: describe_failure(source, exc)}


def describe_failure(source: str, exc: BaseException) -> str:
    """Why ``source`` failed, on one line: a user error's problem (without repeating the path when it is the
    input's own), else the type and message of the innermost cause."""
    user_error = find_user_error(exc)
    problem = getattr(user_error, "problem", None)
    if problem and os.path.abspath(getattr(user_error, "path", "")) == os.path.abspath(source):
        return one_line(problem)
    return describe_error(exc)


class TolerantDataset(Dataset):
    """A MONAI ``Dataset`` whose items that fail to load or transform become failure records
    ``{"failed_source": path, "failed_reason": why}`` instead of exceptions.

    The record travels through the data loader like any item, also from worker processes, and
    :class:`TolerantEvaluator` skips it. Use it with ``batch_size=1`` (whole micrographs of different
    sizes do not batch anyway): a failure record does not collate with a good item.

    Args:
        data: the datalist.
        transform: the preprocessing.
        source_key: the key of the input path, named in the record.
    """

    def __init__(self, data: Sequence, transform: Callable | None = None, source_key: str = SOURCE_KEY) -> None:
        super().__init__(data=data, transform=transform)
        self.source_key = source_key

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)
        except Exception as exc:  # one input must not stop the batch; the reason is recorded
            item = self.data[index]
            source = str(item.get(self.source_key, index)) if isinstance(item, dict) else str(index)
            if find_user_error(exc) is None:
                logger.warning("%s: unexpected error while loading", source, exc_info=exc)
            return failure_record(source, exc)


class FailureLog:
    """The inputs of a batch run that failed, with the reason: one warning each in the log, and
    ``failed.csv`` (columns ``image``, ``reason``) rewritten atomically after every failure, so that it
    is complete even if the run is killed.

    A new log removes the ``failed.csv`` of an earlier run: failed inputs have no outputs, so a rerun
    tries them again and lists them again if they still fail.

    Args:
        path: the CSV file, e.g. ``OUT/failed.csv``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.failures: list[tuple[str, str]] = []
        self.attempted = 0
        self.path.unlink(missing_ok=True)

    def count(self, inputs: int = 1) -> None:
        """Note that ``inputs`` more inputs were attempted (failed or not)."""
        self.attempted += inputs

    def record(self, source: str, reason: str) -> None:
        """List ``source`` as failed because of ``reason``."""
        reason = one_line(reason)
        self.failures.append((str(source), reason))
        logger.warning("%s: %s (skipped, listed in %s)", source, reason, self.path)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(FAILED_CSV_COLUMNS)
        writer.writerows(self.failures)
        write_atomic(self.path, lambda temporary: temporary.write_text(buffer.getvalue()))

    def raise_if_failed(self) -> None:
        """End a run in which inputs failed with a one-line error; log a summary either way.

        Raises:
            FailedInputsError: "N of M images failed, see <path>".
        """
        if not self.failures:
            logger.info("%d images processed, none failed", self.attempted)
            return
        total = max(self.attempted, len(self.failures))
        raise FailedInputsError(f"{len(self.failures)} of {total} images failed, see {self.path}")


def _sources(batchdata: Any, source_key: str) -> list[str]:
    value = batchdata.get(source_key) if isinstance(batchdata, dict) else None
    if isinstance(value, MetaTensor) and "filename_or_obj" in value.meta:
        return [str(name) for name in ensure_tuple(value.meta["filename_or_obj"])]
    return [f"batch item {index}" for index in range(len(value) if value is not None else 1)]


class TolerantEvaluator(SupervisedEvaluator):
    """MONAI's ``SupervisedEvaluator`` that goes on when an input fails: failure records of a
    :class:`TolerantDataset` are skipped, and a batch whose inference or postprocessing raises is skipped;
    both are listed in ``failure_log``.

    Args:
        failure_log: where failed inputs are listed.
        source_key: the key of the input image, whose meta names the file.
        args, kwargs: those of ``SupervisedEvaluator``.
    """

    def __init__(self, *args: Any, failure_log: FailureLog, source_key: str = SOURCE_KEY, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure_log = failure_log
        self.source_key = source_key

    def _iteration(self, engine: SupervisedEvaluator, batchdata: dict) -> dict:
        if isinstance(batchdata, dict) and FAILED_SOURCE_KEY in batchdata:
            sources = ensure_tuple(batchdata[FAILED_SOURCE_KEY])
            self.failure_log.count(len(sources))
            for source, reason in zip(sources, ensure_tuple(batchdata[FAILED_REASON_KEY])):
                self.failure_log.record(source, reason)
            return {}
        sources = _sources(batchdata, self.source_key)
        self.failure_log.count(len(sources))
        try:
            return super()._iteration(engine, batchdata)
        except Exception as exc:  # one input must not stop the batch; the reason is recorded
            if find_user_error(exc) is None:
                logger.warning("%s: unexpected error during inference", ", ".join(sources), exc_info=exc)
            for source in sources:
                self.failure_log.record(source, describe_failure(source, exc))
            return {}
