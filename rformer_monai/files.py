"""Atomic file writing: every output is written to a temporary file in its folder and renamed, so that an
interrupted run never leaves a half-written file that looks complete."""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MASK_SUFFIX = "_mask.tif"
PROBABILITY_SUFFIX = "_prob.tif"
MASK_FOREGROUND = 255
"""Grey value of particle pixels in a written mask (0 is background)."""
HASH_CHUNK_BYTES = 1 << 20  # read at a time when hashing a file
FILE_MODE = 0o666  # before the umask, as open() would create it
TEMPORARY_SUFFIX = ".tmp"


def output_stem(source: str | os.PathLike) -> str:
    """The output name stem of an input file: its file name without the suffix."""
    return Path(str(source)).stem


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(temporary)`` on a temporary file in the same folder, then a rename.

    A reader (or a rerun) sees the old file or the complete new one, never a half-written file; the
    temporary file is removed when ``write`` fails, and one left by a killed process is named by
    :func:`partial_writes`. The file gets the permissions ``open()`` would have given it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, FILE_MODE & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def partial_writes(path: str | os.PathLike) -> list[Path]:
    """Temporary files that :func:`write_atomic` left beside ``path`` when its process was killed mid-write."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{TEMPORARY_SUFFIX}"))


IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
"""Sample types ImageJ opens; other arrays get their calibration as standard resolution tags in centimetres."""
NM_PER_CENTIMETRE = 1e7


def write_tiff_atomic(path: str | os.PathLike, array: np.ndarray, pixel_size_nm: float | None = None) -> Path:
    """Write ``array`` to ``path`` as a compressed TIFF via a temporary file in the same folder and a rename.

    With ``pixel_size_nm``, the file carries ImageJ's calibration in nm (Fiji opens it to scale); arrays of a
    type ImageJ cannot open (uint32) carry it as resolution tags in centimetres instead.
    """
    import tifffile

    options = {"compression": "zlib", **calibration_options(pixel_size_nm, np.asarray(array).dtype in IMAGEJ_DTYPES)}
    return write_atomic(path, lambda temporary: tifffile.imwrite(temporary, array, **options))


def calibration_options(pixel_size_nm: float | None, imagej: bool) -> dict[str, Any]:
    """``tifffile.imwrite`` options that calibrate a TIFF: ImageJ's calibration in nm (``imagej``), else resolution
    tags in centimetres; none without a pixel size."""
    if pixel_size_nm is None:
        return {}
    if imagej:
        pixels_per_nm = 1.0 / float(pixel_size_nm)
        return {"imagej": True, "resolution": (pixels_per_nm, pixels_per_nm), "metadata": {"unit": "nm"}}
    pixels_per_cm = NM_PER_CENTIMETRE / float(pixel_size_nm)
    return {"resolution": (pixels_per_cm, pixels_per_cm), "resolutionunit": "CENTIMETER"}


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str]) -> Path:
    """Write ``rows`` (one mapping per row; keys not in ``fieldnames`` are ignored) under a header of
    ``fieldnames`` as CSV, atomically; the folder is created when missing."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, lambda temporary: temporary.write_text(buffer.getvalue(), encoding="utf-8"))


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
