"""Ignite handlers for the bundle's training: a clear log line per epoch."""

from __future__ import annotations

import logging
import time

from ignite.engine import Engine, Events

logger = logging.getLogger("rformer_monai.training")


class EpochSummaryHandler:
    """Log one line per epoch: epoch, mean training loss, latest and best validation metric, time.

    Args:
        evaluator: the validation evaluator whose key metric is reported (optional).
        loss_key: key of the loss in the trainer's per-iteration output.
    """

    def __init__(self, evaluator: Engine | None = None, loss_key: str = "loss") -> None:
        self.evaluator = evaluator
        self.loss_key = loss_key
        self._losses: list[float] = []
        self._epoch_start = 0.0

    def attach(self, engine: Engine) -> None:
        """Attach to the trainer."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log)

    def _start(self, engine: Engine) -> None:
        self._losses = []
        self._epoch_start = time.perf_counter()

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        outputs = output if isinstance(output, list) else [output]
        if outputs and isinstance(outputs[0], dict) and self.loss_key in outputs[0]:
            self._losses.append(float(outputs[0][self.loss_key]))

    def _log(self, engine: Engine) -> None:
        mean_loss = sum(self._losses) / max(len(self._losses), 1)
        parts = [f"epoch {engine.state.epoch}/{engine.state.max_epochs}", f"train loss {mean_loss:.4f}"]
        state = getattr(self.evaluator, "state", None)
        if state is not None and getattr(state, "key_metric_name", None) and state.epoch > 0:
            name = state.key_metric_name
            latest = state.metrics.get(name)
            if latest is not None:
                parts.append(f"{name} {latest:.4f}")
            parts.append(f"best {state.best_metric:.4f} (epoch {state.best_metric_epoch})")
        parts.append(f"{time.perf_counter() - self._epoch_start:.1f} s")
        logger.info(" | ".join(parts))
