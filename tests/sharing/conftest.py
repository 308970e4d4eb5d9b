"""Fixtures of the sharing tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sharing_helpers import copy_bundle
from tiny_bundle_network import tiny_network


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """A copy of the bundle in ``tmp_path/residualformer_sem`` whose ``models/model.pt`` holds tiny random weights."""
    bundle = copy_bundle(tmp_path / "residualformer_sem")
    (bundle / "models").mkdir(exist_ok=True)
    torch.save(tiny_network().state_dict(), bundle / "models" / "model.pt")
    return bundle
