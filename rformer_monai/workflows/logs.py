"""Console logging that keeps log lines and progress bars apart."""

from __future__ import annotations

import logging

from tqdm import tqdm

__all__ = ["ProgressAwareHandler", "keep_log_lines_apart"]


class ProgressAwareHandler(logging.StreamHandler):
    """A console handler that prints every record on a line of its own above the running progress bars
    (``tqdm.write``), instead of in the middle of a bar's line; the bundle's ``logging.conf`` uses it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging's own contract: a failing handler reports and goes on
            self.handleError(record)


def keep_log_lines_apart() -> None:
    """Make the root logger's console handlers print above progress bars: each ``StreamHandler`` (the one
    ``logging.conf`` installs) becomes a :class:`ProgressAwareHandler` on the same stream, level and format."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:
            replacement = ProgressAwareHandler(handler.stream)
            replacement.setLevel(handler.level)
            replacement.setFormatter(handler.formatter)
            root.removeHandler(handler)
            root.addHandler(replacement)
