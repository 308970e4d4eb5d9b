"""User errors: one clear line on the terminal, the full traceback in a log file.

The project's user errors (a bad input file, a dataset folder without images, a checkpoint of another
network, a wrong setting, images that failed in a batch run) say what is wrong in their message. When
one of them ends a ``python -m monai.bundle run`` (where MONAI wraps it in ``RuntimeError("Failed to
evaluate ...")``), :func:`install_error_reporting` prints only::

    error: <file>: <problem>

to stderr and writes the full traceback to ``<output_dir>/error.log``. Any other exception is a bug and
keeps Python's usual traceback (also copied to the log).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rformer_monai.data.discovery import DatasetLayoutError, DatasetProblemsError
from rformer_monai.folders import OutputFolderError
from rformer_monai.networks.weights import CheckpointError
from rformer_monai.transforms.io import MicrographReadError

ERROR_LOG_NAME = "error.log"
ERROR_PREFIX = "error: "
MAX_MESSAGE_CHARACTERS = 500  # longer messages (a library's paragraph) are cut on the terminal, kept in the log


class SettingsError(ValueError):
    """A bundle setting (a config value or a command-line override) has the wrong type or value; the
    message names the setting."""


class FailedInputsError(ValueError):
    """Some inputs of a batch run failed (the others were processed); the message says how many and where
    they are listed."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    MicrographReadError,
    OutputFolderError,
    DatasetLayoutError,
    CheckpointError,
    SettingsError,
    FailedInputsError,
)
"""Errors caused by the user's files or settings, whose message is all the user needs."""

# errors whose message already says where to look: no pointer to the traceback log
_SELF_EXPLAINING = (FailedInputsError,)

ExceptHook = Callable[[type[BaseException], BaseException, "TracebackType | None"], object]


def find_user_error(exc: BaseException) -> BaseException | None:
    """The first user error (see ``USER_ERRORS``) in ``exc`` or the chain of its causes and contexts."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, USER_ERRORS):
            return current
        pending.extend((current.__cause__, current.__context__))
    return None


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines joined by spaces."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def root_cause(exc: BaseException) -> BaseException:
    """The innermost explicit cause of ``exc`` (MONAI wraps transform errors in ``RuntimeError``)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong: a user error's message, else the innermost cause's type and message."""
    user_error = find_user_error(exc)
    if user_error is not None:
        return one_line(str(user_error))
    cause = root_cause(exc)
    return one_line(f"{type(cause).__name__}: {cause}")


class ErrorReporter:
    """A ``sys.excepthook``: user errors print one line, everything is logged in full to ``log_path``.

    Args:
        log_path: the file the full tracebacks are appended to (its folder is created when needed).
        fallback: the hook that reports exceptions that are not user errors (Python's default).
    """

    def __init__(self, log_path: str | os.PathLike, fallback: ExceptHook = sys.__excepthook__) -> None:
        self.log_path = Path(log_path)
        self.fallback = fallback

    def _write_log(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> bool:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a") as log:
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
                log.write("".join(traceback.format_exception(exc_type, exc, tb)))
        except OSError:
            return False
        return True

    def __call__(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: Python's usual behaviour
            self.fallback(exc_type, exc, tb)
            return
        logged = self._write_log(exc_type, exc, tb)
        user_error = find_user_error(exc)
        if user_error is None:
            self.fallback(exc_type, exc, tb)
            return
        message = one_line(str(user_error))
        if len(message) > MAX_MESSAGE_CHARACTERS:
            message = message[:MAX_MESSAGE_CHARACTERS].rstrip() + " [...]"
        if isinstance(user_error, DatasetProblemsError):  # a line per problem, each naming its file
            message = "\n".join([user_error.header, *(f"  {problem}" for problem in user_error.problems)])
        pointer = f" (traceback in {self.log_path})" if logged and not isinstance(user_error, _SELF_EXPLAINING) else ""
        sys.stderr.write(f"{ERROR_PREFIX}{message}{pointer}\n")
        sys.stderr.flush()


def install_error_reporting(output_dir: str | os.PathLike, log_name: str = ERROR_LOG_NAME) -> Path:
    """Report uncaught exceptions as one line for user errors, with full tracebacks in ``output_dir/log_name``.

    Meant for the configs' ``"initialize"`` list; installing again replaces the previous reporter.

    Returns:
        The log file's path.
    """
    previous = sys.excepthook
    fallback = previous.fallback if isinstance(previous, ErrorReporter) else previous
    reporter = ErrorReporter(Path(str(output_dir)) / log_name, fallback=fallback)
    sys.excepthook = reporter
    return reporter.log_path
