"""The learning-rate schedules of the bundle's training."""

from __future__ import annotations

import math

import pytest
import torch

from rformer_monai.workflows import learning_rate_scheduler

LEARNING_RATE = 1e-3
EPOCHS = 4


def learning_rates(schedule: str) -> list[float]:
    """The optimiser's learning rate in each epoch of a run of ``EPOCHS`` epochs."""
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 1).parameters(), lr=LEARNING_RATE)
    scheduler = learning_rate_scheduler(optimizer, schedule, EPOCHS)
    rates = []
    for _ in range(EPOCHS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_constant_schedule_keeps_the_learning_rate():
    assert learning_rates("constant") == [LEARNING_RATE] * EPOCHS


def test_cosine_schedule_falls_along_half_a_cosine():
    expected = [LEARNING_RATE * (1 + math.cos(math.pi * epoch / EPOCHS)) / 2 for epoch in range(EPOCHS)]
    rates = learning_rates("cosine")
    assert rates == pytest.approx(expected)
    assert rates[-1] < LEARNING_RATE / 5  # the last epoch's steps are small


@pytest.mark.parametrize(
    ("schedule", "max_epochs", "message"),
    [("step", 4, "lr_schedule must be one of"), ("cosine", 0, "max_epochs must be >= 1")],
)
def test_bad_schedule(schedule, max_epochs, message):
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=LEARNING_RATE)
    with pytest.raises(ValueError, match=message):
        learning_rate_scheduler(optimizer, schedule, max_epochs)
