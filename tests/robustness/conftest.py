"""Fixtures of the robustness tests: one torch thread, the tiny network's weights, and a guard that puts back
the ``sys.excepthook`` that the bundle's configs install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from tiny_bundle_network import tiny_network


@pytest.fixture(scope="module", autouse=True)
def single_threaded_torch():
    """One torch thread, as the bundle subprocesses get (``OMP_NUM_THREADS=1``): CPU results then agree bit
    for bit between this process and a subprocess, and tiny networks run fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def restore_excepthook(monkeypatch):
    """The configs' "initialize" list installs an excepthook: keep it out of the other tests."""
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)


@pytest.fixture
def tiny_weights(tmp_path) -> Path:
    """``bundle/models/model.pt``: weights of the tiny network (seeded), as training would write them."""
    path = tmp_path / "bundle" / "models" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save(tiny_network().state_dict(), path)
    return path
