"""Detecting the instrument data bar (text and scale-bar strip) at the bottom of SEM micrographs.

A data bar row is drawn on a flat background: one grey value (black on Zeiss and FEI bars) covers
most of the row, with text and scale-bar pixels on top. Rows of a real micrograph are noisy and no
single value covers a large part of them. The bar is the run of such rows that reaches the bottom of
the image (a few stray rows below it are allowed) and ends, above, at a row of micrograph.
"""

from __future__ import annotations

import numpy as np

# A row is "flat" (bar background) when one grey value covers at least this fraction of it.
FLAT_ROW_FRACTION = 0.5
# The bar lies within this bottom fraction of the image height.
MAX_BAR_FRACTION = 0.3
# Bars thinner than this many rows are not taken for a bar.
MIN_BAR_ROWS = 8
# Non-flat rows allowed below the bar (some instruments leave a thin border under it).
MAX_ROWS_BELOW_BAR = 4


def _flat_rows(image: np.ndarray) -> np.ndarray:
    """Boolean per row: does one grey value cover at least ``FLAT_ROW_FRACTION`` of the row?"""
    sorted_rows = np.sort(image, axis=1)
    changes = np.diff(sorted_rows, axis=1) != 0
    width = image.shape[1]
    flat = np.empty(image.shape[0], dtype=bool)
    for row, row_changes in enumerate(changes):
        run_ends = np.flatnonzero(np.concatenate(([True], row_changes, [True])))
        flat[row] = np.max(np.diff(run_ends)) >= FLAT_ROW_FRACTION * width
    return flat


def detect_data_bar(image: np.ndarray) -> int:
    """Number of rows of the instrument data bar at the bottom of a 2-D micrograph, 0 where there is none.

    Args:
        image: a (H, W) grey micrograph as stored (any dtype).

    Returns:
        How many bottom rows to crop: the bar and any stray rows below it.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {tuple(image.shape)}.")
    height = image.shape[0]
    search_rows = int(height * MAX_BAR_FRACTION)
    if search_rows < MIN_BAR_ROWS:
        return 0
    flat = _flat_rows(image[height - search_rows :])
    bottom = len(flat)
    # skip stray non-flat rows under the bar
    skipped = 0
    while skipped < MAX_ROWS_BELOW_BAR and bottom > 0 and not flat[bottom - 1]:
        bottom -= 1
        skipped += 1
    top = bottom
    while top > 0 and flat[top - 1]:
        top -= 1
    bar_rows = bottom - top
    if bar_rows < MIN_BAR_ROWS or top == 0:
        # too thin to be a bar, or flat up to the search limit: a flat image, not a bar on a micrograph
        return 0
    return search_rows - top
