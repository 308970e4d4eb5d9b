"""Shared fixtures: the real BAM TiO2 SEM dataset (skipped where absent) and small synthetic file writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

# The real dataset is CC BY-NC-ND: it is read from the shared folder beside the repository, never copied.
BAM_DATASET_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bam-tio2-sem"


@pytest.fixture(scope="session")
def bam_dataset_dir() -> Path:
    """The BAM TiO2 SEM dataset folder (published layout); skips the test where it is absent."""
    if not (BAM_DATASET_DIR / "Datasets").is_dir():
        pytest.skip(f"real BAM TiO2 SEM data not found at {BAM_DATASET_DIR}")
    return BAM_DATASET_DIR


@pytest.fixture
def write_tiff(tmp_path: Path) -> Callable[..., Path]:
    """``write_tiff(name, array, **tifffile_kwargs)``: write ``array`` to ``tmp_path / name`` and return the path."""

    def _write(name: str, array: np.ndarray, **tifffile_kwargs) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, array, **tifffile_kwargs)
        return path

    return _write


@pytest.fixture
def write_image(tmp_path: Path) -> Callable[..., Path]:
    """``write_image(name, array, mode=None, **save_kwargs)``: save with Pillow (PNG, JPEG, BMP) into ``tmp_path``."""
    from PIL import Image

    def _write(name: str, array: np.ndarray, mode: str | None = None, **save_kwargs) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode)
        image.save(path, **save_kwargs)
        return path

    return _write


def _micrograph_with_bar(
    shape: tuple[int, int], bar_rows: int, seed: int = 0, dtype: type = np.uint8
) -> np.ndarray:
    """Uniform noise (no grey value dominates a row) with a black data bar of ``bar_rows`` rows at the bottom,
    carrying white text blocks and a scale bar that cover less than half of each bar row."""
    height, width = shape
    full_scale = np.iinfo(dtype).max
    image = np.random.default_rng(seed).integers(0, full_scale, size=shape, endpoint=True, dtype=dtype)
    if bar_rows:
        bar = image[height - bar_rows :]
        bar[:] = 0
        text_rows = slice(bar_rows // 5, max(bar_rows // 5 + 1, bar_rows // 2))
        for start in range(width // 16, width // 2, width // 8):  # "words": a third of the width
            bar[text_rows, start : start + width // 24] = full_scale
        bar[bar_rows // 2 : bar_rows // 2 + max(1, bar_rows // 8), (3 * width) // 4 : (9 * width) // 10] = full_scale
    return image


@pytest.fixture
def micrograph_with_bar() -> Callable[..., np.ndarray]:
    """``micrograph_with_bar(shape, bar_rows, seed=0, dtype=np.uint8)``: a noise micrograph whose bottom
    ``bar_rows`` rows are an instrument data bar (0 background, full-scale text), bar truth known exactly."""
    return _micrograph_with_bar


@pytest.fixture
def merged_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two touching particles predicted as one: a 10x21 block of probability 0.9, the truth two 10x10
    squares split by column 15, and a separation output of 0.95 on columns 14..16."""
    probability = np.zeros((20, 31), dtype=np.float32)
    probability[5:15, 5:26] = 0.9
    truth = probability > 0
    truth[:, 15] = False
    separation = np.zeros_like(probability)
    separation[5:15, 14:17] = 0.95
    return probability, truth, separation
