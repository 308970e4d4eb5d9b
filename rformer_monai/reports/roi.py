"""ImageJ ROI sets: ``<stem>_rois.zip``, one polygon ROI per particle that Fiji's ROI Manager opens.

Each ROI is the particle's outline (the 0.5 iso-contour of its pixels, which runs along the pixel edges with
the corners cut), in ImageJ's pixel coordinates (the top-left corner of the top-left pixel is 0, 0) and named
by the particle's ``label`` (zero-padded), the row of the particle table it belongs to.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from skimage.measure import find_contours, regionprops

from rformer_monai.files import write_atomic

__all__ = ["ROIS_SUFFIX", "particle_outlines", "roi_name", "write_roi_zip"]

ROIS_SUFFIX = "_rois.zip"
CONTOUR_LEVEL = 0.5
PIXEL_CENTRE = 0.5
"""ImageJ's coordinate of a pixel's centre relative to its top-left corner."""
NAME_DIGITS = 4


def roi_name(label: int) -> str:
    """The ROI's name for a particle label: the label, zero-padded so that the ROI Manager sorts it."""
    return f"{int(label):0{NAME_DIGITS}d}"


def particle_outlines(labels: np.ndarray, offset: tuple[int, int] = (0, 0)) -> dict[int, np.ndarray]:
    """Each particle's outer outline as (K, 2) ``(x, y)`` points in ImageJ's pixel coordinates.

    Args:
        labels: (H, W) integer instance labels, 0 background.
        offset: (row, column) of ``labels``' first pixel in a larger image (a block of it): points in that image.

    Returns:
        label -> outline polygon (closed implicitly), in label order.
    """
    outlines: dict[int, np.ndarray] = {}
    for region in regionprops(np.asarray(labels)):
        padded = np.pad(region.image.astype(np.float64), 1)
        contours = find_contours(padded, CONTOUR_LEVEL, fully_connected="high")
        outer = max(contours, key=len)[:-1]  # the longest is the outer one (holes are inside); drop the repeat
        top, left = np.add(region.bbox[:2], offset)
        xy = np.stack([outer[:, 1] - 1 + left + PIXEL_CENTRE, outer[:, 0] - 1 + top + PIXEL_CENTRE], axis=1)
        outlines[int(region.label)] = xy.astype(np.float32)
    return outlines


def write_roi_zip(path: str | os.PathLike, outlines: Mapping[int, np.ndarray]) -> Path:
    """Write every particle's outline as an ImageJ polygon ROI into the zip ``path`` (atomically), in label order.

    Args:
        path: the ``.zip`` file.
        outlines: label -> (K, 2) ``(x, y)`` outline (:func:`particle_outlines`).

    Returns:
        The path written.
    """
    import roifile

    def write(temporary: Path) -> None:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for label, points in sorted(outlines.items()):
                roi = roifile.ImagejRoi.frompoints(points, name=roi_name(label))
                archive.writestr(f"{roi_name(label)}.roi", roi.tobytes())

    return write_atomic(path, write)
