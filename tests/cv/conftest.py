"""A tiny labelled dataset and a tiny network for cross-validation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_helpers import write_labelled_dataset


@pytest.fixture
def tiny_overrides() -> dict:
    """Bundle overrides for a small, fast network and run on CPU, two folds."""
    return {
        "network_def#channels": [4, 8, 16, 32],
        "network_def#decoder_channels": 8,
        "network_def#fusion_stride": 4,
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
