"""A tiny labelled dataset (images/ + masks/) of synthetic micrographs for tests that run real workflows."""

from __future__ import annotations

from pathlib import Path

import tifffile

from rformer_monai.data.synthetic import render_micrograph

TINY_MEAN_DIAMETER_PX = 12.0  # particles small enough for a few dozen in a 96x96 image


def write_labelled_dataset(
    root: Path, count: int = 4, size: tuple[int, int] = (96, 96), mean_diameter_px: float = TINY_MEAN_DIAMETER_PX
) -> Path:
    """Write ``count`` synthetic micrographs ``images/tiny_<i>.tif`` (image ``i`` drawn with seed ``i``)
    and their masks ``masks/tiny_<i>_mask.tif`` under ``root``; return ``root``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(count):
        image, mask = render_micrograph(size, rng=index, mean_diameter_px=mean_diameter_px)
        tifffile.imwrite(root / "images" / f"tiny_{index}.tif", image)
        tifffile.imwrite(root / "masks" / f"tiny_{index}_mask.tif", mask)
    return root
