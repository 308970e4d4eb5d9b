"""A tiny labelled dataset and a tiny network for cross-validation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_helpers import write_labelled_dataset
from tiny_bundle_network import TINY_NETWORK


@pytest.fixture
def tiny_overrides() -> dict:
    """Bundle overrides for a small, fast network and run on CPU, two folds."""
    return {
        **TINY_NETWORK,
        "roi_size": [64, 64],
        "num_workers": 0,
        "device": "cpu",
        "crops_per_image": 1,
        "num_folds": 2,
    }


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Four synthetic 96x96 micrographs with masks (images/ + masks/ layout)."""
    return write_labelled_dataset(tmp_path / "data")
