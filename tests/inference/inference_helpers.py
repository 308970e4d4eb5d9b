"""Helpers of the inference tests: small networks, synthetic micrographs and the bundle's whole-image reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from torch import nn

from rformer_monai.transforms import inference_transforms
from rformer_monai.transforms.pipelines import DEFAULT_INTENSITY

SMALL_ROI = (64, 64)
BUNDLE_ROI = (256, 256)
OVERLAP = 0.25


def context_network(seed: int = 0) -> nn.Module:
    """Two 3x3 convolutions: cheap, and zero padding makes its output depend on where each window lies."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3, padding=1)).eval()


def particles_image(shape: tuple[int, int], seed: int = 0, bar_rows: int = 0) -> np.ndarray:
    """An 8-bit micrograph: bright disks on a noisy grey background, a black data bar with white text below."""
    rng = np.random.default_rng(seed)
    height, width = shape
    image = rng.normal(60, 12, size=shape)
    rows, columns = np.ogrid[:height, :width]
    for _ in range(max(1, height * width // 2000)):
        centre_row, centre_column, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, 12)
        image[(rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius**2] += 120
    image = np.clip(image, 0, 255).astype(np.uint8)
    if bar_rows:
        image[height - bar_rows :] = 0
        image[height - bar_rows + bar_rows // 4 : height - bar_rows // 4, width // 10 : width // 3] = 255
    return image


def whole_image_probability(
    path: Path, network: nn.Module, inferer: SlidingWindowInferer, intensity: str = DEFAULT_INTENSITY, crop_bottom=None
) -> np.ndarray:
    """The bundle's inference on the whole image: its preprocessing (data bar cropped, per-image normalisation),
    the sliding window, a sigmoid, and the bar's rows put back as 0 (what its ``Invertd`` does)."""
    image = inference_transforms(intensity=intensity, crop_bottom=crop_bottom)({"image": str(path)})["image"]
    with torch.inference_mode():
        probability = torch.sigmoid(inferer(image[None].as_tensor(), network))[0, 0].numpy()
    bar_rows = int(image.meta["data_bar_rows"])
    return np.pad(probability, ((0, bar_rows), (0, 0)))


# a synthetic montage whose exact mask is known: bright disks on a lattice, a data bar at the bottom
DISK_PERIOD = (97, 89)  # lattice periods (rows, columns): prime, so no block or window border lines up with it
DISK_RADIUS = 20
DISK_VALUE = 200
BACKGROUND_VALUE = 40
BACKGROUND_LEVELS = 23  # the background varies over this many grey levels, so that no row is flat


def lattice_disks(row_start: int, row_stop: int, width: int) -> np.ndarray:
    """Rows ``[row_start, row_stop)`` of the disk lattice: True inside a disk."""
    rows = np.arange(row_start, row_stop)[:, None] % DISK_PERIOD[0] - DISK_PERIOD[0] // 2
    columns = np.arange(width)[None, :] % DISK_PERIOD[1] - DISK_PERIOD[1] // 2
    return rows**2 + columns**2 <= DISK_RADIUS**2


def lattice_micrograph_rows(row_start: int, row_stop: int, width: int, height: int, bar_rows: int) -> np.ndarray:
    """Rows ``[row_start, row_stop)`` of an 8-bit micrograph of ``height`` rows: disks on a textured background,
    and a black data bar with a white text block (a quarter of the width) in the bottom ``bar_rows`` rows."""
    rows = np.arange(row_start, row_stop)[:, None]
    columns = np.arange(width)[None, :]
    image = (BACKGROUND_VALUE + (7 * rows + 13 * columns) % BACKGROUND_LEVELS).astype(np.uint8)
    image[lattice_disks(row_start, row_stop, width)] = DISK_VALUE
    in_bar = rows[:, 0] >= height - bar_rows
    image[in_bar] = 0
    text_rows = in_bar & (rows[:, 0] >= height - bar_rows * 3 // 4) & (rows[:, 0] < height - bar_rows // 4)
    image[np.ix_(text_rows, np.arange(width // 10, width // 10 + width // 4))] = 255
    return image
