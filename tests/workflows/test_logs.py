"""Log lines and progress bars on lines of their own."""

from __future__ import annotations

import io
import logging

from tqdm import tqdm

from rformer_monai.workflows.logs import ProgressAwareHandler, keep_log_lines_apart


def test_a_record_logged_during_a_progress_bar_is_a_line_of_its_own():
    stream = io.StringIO()
    logger = logging.getLogger("test_logs")
    logger.propagate = False
    handler = ProgressAwareHandler(stream)
    logger.addHandler(handler)
    try:
        with tqdm(total=3, file=stream, ascii=True) as bar:
            bar.update(1)
            logger.warning("image 1: 12 particles")
            bar.update(2)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().replace("\r", "\n").split("\n")
    assert "image 1: 12 particles" in lines


def test_the_root_console_handler_is_replaced_with_its_stream_level_and_format():
    root = logging.getLogger()
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    saved = list(root.handlers)
    root.handlers = [console]
    try:
        keep_log_lines_apart()
        (handler,) = root.handlers
        assert isinstance(handler, ProgressAwareHandler)
        assert handler.stream is stream and handler.level == logging.WARNING and handler.formatter is console.formatter
    finally:
        root.handlers = saved
