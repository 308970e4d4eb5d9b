"""A 16384 x 16384 micrograph segmented in blocks with bounded memory, and its mask checked pixel by pixel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from inference_helpers import lattice_disks, lattice_micrograph_rows

SIDE = 16384
BAR_ROWS = 300
BLOCK_SIZE = 4096
PEAK_MEMORY_LIMIT = 3 * 10**9  # bytes
WRITE_ROWS = 512
JOB = Path(__file__).with_name("large_image_job.py")


def write_montage(path: Path) -> None:
    """The lattice micrograph as an uncompressed TIFF, written through a memory map a few rows at a time."""
    image = tifffile.memmap(path, shape=(SIDE, SIDE), dtype=np.uint8)
    for start in range(0, SIDE, WRITE_ROWS):
        image[start : start + WRITE_ROWS] = lattice_micrograph_rows(start, start + WRITE_ROWS, SIDE, SIDE, BAR_ROWS)
    image.flush()
    del image


@pytest.mark.slow
def test_16k_micrograph_in_bounded_memory(tmp_path):
    image = tmp_path / "montage.tif"
    write_montage(image)
    output = tmp_path / "masks"
    job = subprocess.run(
        [sys.executable, str(JOB), str(image), str(output), str(BLOCK_SIZE)],
        capture_output=True, text=True, check=False,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    measured = json.loads(job.stdout.strip().splitlines()[-1])
    print(f"16384 x 16384: peak resident memory {measured['peak_bytes'] / 1e9:.2f} GB, {measured['seconds']:.0f} s")
    assert measured["peak_bytes"] < PEAK_MEMORY_LIMIT
    assert [path.name for path in output.iterdir()] == ["montage_mask.tif"]

    mask = tifffile.imread(output / "montage_mask.tif")
    assert mask.shape == (SIDE, SIDE) and mask.dtype == np.uint8
    assert not mask[SIDE - BAR_ROWS :].any()
    for start in range(0, SIDE - BAR_ROWS, WRITE_ROWS):  # every block, seam and window border: exact
        stop = min(start + WRITE_ROWS, SIDE - BAR_ROWS)
        np.testing.assert_array_equal(mask[start:stop] == 255, lattice_disks(start, stop, SIDE))
