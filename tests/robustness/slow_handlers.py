"""Test helper imported by bundle subprocesses: slows a run down so that a test can kill it part-way."""

from __future__ import annotations

import time

from ignite.engine import Engine, Events


class SleepAfterEach:
    """Ignite handler sleeping ``seconds`` after every ``event`` (an ``ignite.engine.Events`` name).

    Args:
        event: e.g. ``"ITERATION_COMPLETED"`` or ``"EPOCH_COMPLETED"``.
        seconds: how long to sleep.
    """

    def __init__(self, event: str, seconds: float) -> None:
        self.event = getattr(Events, event)
        self.seconds = seconds

    def attach(self, engine: Engine) -> None:
        """Sleep after each of ``engine``'s events (attached last, so after the bundle's own handlers)."""
        engine.add_event_handler(self.event, lambda _: time.sleep(self.seconds))
