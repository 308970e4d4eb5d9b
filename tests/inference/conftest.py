"""Fixtures of the inference tests: one CPU thread, small networks and inferers, a TIFF writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from inference_helpers import BUNDLE_ROI, OVERLAP, SMALL_ROI
from monai.inferers import SlidingWindowInferer
from tiny_bundle_network import tiny_network
from torch import nn


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: two threads on a shared 2-core machine are many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_net() -> nn.Module:
    return tiny_network()


@pytest.fixture
def small_inferer() -> SlidingWindowInferer:
    """64x64 windows (the tiny network's output stride divides them), overlap and blending as the bundle's."""
    return SlidingWindowInferer(SMALL_ROI, sw_batch_size=4, overlap=OVERLAP, mode="gaussian")


@pytest.fixture
def bundle_inferer() -> SlidingWindowInferer:
    """The bundle's sliding window: 256x256, overlap 0.25, Gaussian blending."""
    return SlidingWindowInferer(BUNDLE_ROI, sw_batch_size=4, overlap=OVERLAP, mode="gaussian")


@pytest.fixture
def write_micrograph(tmp_path: Path) -> Callable[..., Path]:
    """``write_micrograph(name, array, **tifffile_kwargs)``: a TIFF in ``tmp_path/inputs``."""

    def _write(name: str, array: np.ndarray, **tifffile_kwargs) -> Path:
        path = tmp_path / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, array, **tifffile_kwargs)
        return path

    return _write
