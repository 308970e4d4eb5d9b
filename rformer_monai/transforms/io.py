"""Reading SEM/TEM micrographs and masks: grey channel, pixel size from the instrument's metadata.

The reader plugs into MONAI's ``LoadImage`` as an ``ImageReader``, so every pipeline gets a
channel-first ``MetaTensor`` whose ``meta`` holds:

- ``pixel_size_nm``: the pixel size in nanometres, ``NaN`` where none is known (``NaN`` rather than
  ``None`` so that batches of images still collate; use :func:`pixel_size_from_meta` to read it),
- ``pixel_size_source``: where it came from (``"given"``, ``"zeiss"``, ``"fei"``, ``"imagej"``,
  ``"tiff_resolution"`` or ``"unknown"``),
- ``source_dtype`` and ``source_max``: the stored dtype and its full-scale value (masks are
  binarised at half of it),
- ``colour_conversion``: how colour data became grey (``"none"``, ``"palette"``, ``"rgb"``, ``"rgba"``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import ensure_tuple

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MICROGRAPH_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES

ZEISS_PIXEL_SIZE_KEY = "ap_image_pixel_size"
# "microns": ImageJ writes the plural unit name (Calibration.getUnits) into its TIFF description
NM_PER_UNIT = {"pm": 1e-3, "nm": 1.0, "µm": 1e3, "um": 1e3, "micron": 1e3, "microns": 1e3, "mm": 1e6, "m": 1e9}
NM_PER_METRE = 1e9
NM_PER_CENTIMETRE = 1e7
# ITU-R BT.601 luma weights, the usual RGB -> grey conversion
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
UNKNOWN_PIXEL_SIZE = float("nan")
MAX_IMAGE_PIXELS = 2**31
"""The most pixels a micrograph read whole may have (8 GiB as float32; a 20000 x 20000 montage has 4e8): a file
whose header claims more is refused before its pixels are decoded (a decompression bomb, or a damaged header).
Larger micrographs go through the block-streaming ``python -m rformer_monai.inference``."""
# Pillow colour modes that numpy would see as 3 or 4 channels of something other than RGB(A)
PIL_COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa")


class MicrographReadError(ValueError):
    """A file cannot be used as a single 2-D micrograph or mask; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class MaskShapeError(MicrographReadError):
    """A mask does not have its image's height and width; the message names both files and shapes."""


@dataclass
class Micrograph:
    """A 2-D grey micrograph as read from disk, with the metadata the pipelines need."""

    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def pixel_size_from_meta(meta: dict[str, Any]) -> float | None:
    """Return ``meta["pixel_size_nm"]`` as a float, or ``None`` where the pixel size is unknown."""
    value = meta.get("pixel_size_nm")
    if value is None:
        return None
    value = float(np.asarray(value).reshape(-1)[0])
    return None if math.isnan(value) else value


def _length_in_nm(value: float, unit: str) -> float | None:
    factor = NM_PER_UNIT.get(unit.strip().lower().replace("\u03bc", "\u00b5"))
    return None if factor is None else float(value) * factor


def _zeiss_pixel_size_nm(tif) -> float | None:
    metadata = tif.sem_metadata
    if not metadata or ZEISS_PIXEL_SIZE_KEY not in metadata:
        return None
    entry = metadata[ZEISS_PIXEL_SIZE_KEY]  # ("Image Pixel Size", 7.344, "nm")
    if not isinstance(entry, tuple) or len(entry) < 3:
        return None
    return _length_in_nm(entry[1], entry[2])


def _fei_pixel_size_nm(tif) -> float | None:
    metadata = tif.fei_metadata
    if not metadata:
        return None
    for section in ("Scan", "EScan", "Image"):
        pixel_width_m = metadata.get(section, {}).get("PixelWidth")
        if pixel_width_m:
            return float(pixel_width_m) * NM_PER_METRE
    return None


def _imagej_pixel_size_nm(tif) -> float | None:
    metadata = tif.imagej_metadata
    page = tif.pages.first
    if not metadata or "XResolution" not in page.tags:
        return None
    numerator, denominator = page.tags["XResolution"].value
    if not numerator:
        return None
    unit = str(metadata.get("unit", ""))
    return _length_in_nm(denominator / numerator, unit)


def _tiff_resolution_pixel_size_nm(tif) -> float | None:
    """Standard resolution tags, trusted only in centimetres (inches are usually screen DPI defaults)."""
    page = tif.pages.first
    if "XResolution" not in page.tags or "ResolutionUnit" not in page.tags:
        return None
    if int(page.tags["ResolutionUnit"].value) != 3:  # 3 = CENTIMETER
        return None
    numerator, denominator = page.tags["XResolution"].value
    if not numerator:
        return None
    return NM_PER_CENTIMETRE * denominator / numerator


TIFF_PIXEL_SIZE_SOURCES = (
    ("zeiss", _zeiss_pixel_size_nm),
    ("fei", _fei_pixel_size_nm),
    ("imagej", _imagej_pixel_size_nm),
    ("tiff_resolution", _tiff_resolution_pixel_size_nm),
)


def _to_grey(array: np.ndarray, path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Reduce RGB(A) data (channel last) to one grey channel; 2-D data pass through."""
    if array.ndim == 2:
        return array, "none"
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        conversion = "rgb" if array.shape[-1] == 3 else "rgba"
        rgb = array[..., :3].astype(np.float64)
        grey = rgb @ np.asarray(LUMA_WEIGHTS)
        if np.issubdtype(array.dtype, np.integer):
            grey = np.clip(np.rint(grey), 0, np.iinfo(array.dtype).max).astype(array.dtype)
        else:
            grey = grey.astype(array.dtype)
        return grey, conversion
    raise MicrographReadError(
        path,
        f"holds an array of shape {tuple(array.shape)}: only single 2-D micrographs "
        "(grey, RGB, RGBA or palette, one page) are supported",
    )


def _drop_singleton_axes(array: np.ndarray) -> np.ndarray:
    """Drop length-1 page and sample axes ((1, H, W), (H, W, 1), (1, H, W, 3)), never the image's own height or
    width: a one-row RGB image (1, W, 3) stays colour data."""
    while array.ndim > 2 and array.shape[0] == 1 and not (array.ndim == 3 and array.shape[-1] in (3, 4)):
        array = array[0]
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def _check_values(array: np.ndarray, path: str | os.PathLike) -> None:
    """Reject grey values no pipeline can use (complex, not finite); warn about a constant image."""
    dtype = array.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise MicrographReadError(path, f"holds {array.dtype} values: only integer or real grey values are supported")
    if np.issubdtype(array.dtype, np.floating):
        not_finite = int(np.count_nonzero(~np.isfinite(array)))
        if not_finite:
            raise MicrographReadError(
                path, f"holds {not_finite} pixels that are not finite numbers (NaN or infinity): replace them first"
            )
    if array.min() == array.max():
        logger.warning("%s: every pixel has the value %s (a blank, constant image)", path, array.flat[0])


def check_pixel_count(path: str | os.PathLike, shape: Sequence[int], max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image whose header claims more than ``max_pixels`` pixels, before anything is decoded.

    Raises:
        MicrographReadError: naming the file, the size its header claims and the limit.
    """
    pixels = math.prod(int(extent) for extent in shape)
    if pixels > max_pixels:
        size = " x ".join(str(int(extent)) for extent in shape)
        raise MicrographReadError(
            path,
            f"its header claims {size} = {pixels} pixels, more than the limit of {max_pixels} "
            "(a decompression bomb or a damaged header?): refused without reading it. Segment larger "
            "micrographs with python -m rformer_monai.inference",
        )


def _source_max(dtype: np.dtype) -> float:
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0  # floating-point images are taken to be scaled to [0, 1]


def _read_tiff(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) > 1:
                raise MicrographReadError(
                    path, f"is a multi-page TIFF ({len(tif.pages)} pages): only single-page 2-D micrographs are supported"
                )
            page = tif.pages.first
            check_pixel_count(path, (page.imagelength, page.imagewidth), max_pixels)
            array = page.asarray()
            if page.photometric == tifffile.PHOTOMETRIC.RGB and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
                array = np.moveaxis(array, 0, -1)  # RGB stored as separate planes: (3, H, W) -> (H, W, 3)
            meta: dict[str, Any] = {"colour_conversion": "none"}
            if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
                array = page.colormap.T[array]  # (H, W, 3) uint16 palette colours
                array = (array // 257).astype(np.uint8) if page.bitspersample <= 8 else array
                meta["colour_conversion"] = "palette"
            for source, reader in TIFF_PIXEL_SIZE_SOURCES:
                try:
                    pixel_size_nm = reader(tif)
                except (KeyError, TypeError, ValueError, ZeroDivisionError):
                    pixel_size_nm = None
                if pixel_size_nm is not None and pixel_size_nm > 0:
                    meta["pixel_size_nm"], meta["pixel_size_source"] = pixel_size_nm, source
                    break
    except MicrographReadError:
        raise
    except Exception as exc:  # a decoder fed a damaged file raises almost anything (struct.error, KeyError, ...)
        raise MicrographReadError(path, f"is not a readable TIFF (truncated or corrupt?): {exc}") from exc
    return array, meta


def _read_with_pil(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image

    try:
        with _pil_pixel_limit(None), Image.open(path) as image:  # Pillow's own limit (89e6) refuses montages
            check_pixel_count(path, image.size[::-1], max_pixels)
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise MicrographReadError(path, f"holds {frames} frames: only single 2-D micrographs are supported")
            conversion = "none"
            if image.mode in ("P", "PA"):
                image, conversion = image.convert("RGBA" if "transparency" in image.info else "RGB"), "palette"
            elif image.mode in ("LA",):
                image = image.convert("L")
            elif image.mode in PIL_COLOUR_MODES:  # CMYK or YCbCr JPEG, ...: RGB first, then grey
                image = image.convert("RGB")
            array = np.asarray(image)
    except MicrographReadError:
        raise
    except Exception as exc:  # UnidentifiedImageError, OSError, SyntaxError, struct.error, ...
        raise MicrographReadError(path, f"is not a readable image (truncated or not an image?): {exc}") from exc
    return array, {"colour_conversion": conversion}


@contextlib.contextmanager
def _pil_pixel_limit(limit: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit set to ``limit`` (``None``: off) while the block runs; ours applies."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_micrograph_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` when it is a non-empty, readable file.

    Raises:
        MicrographReadError: a folder, a missing (or a broken symbolic link), empty or unreadable file.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise MicrographReadError(path, f"is a broken symbolic link: its target {os.readlink(path)} does not exist")
    if path.is_dir():
        raise MicrographReadError(path, "is a folder, not an image file")
    if not path.is_file():
        raise MicrographReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise MicrographReadError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MicrographReadError(path, "file is not readable (check its permissions)")
    return path


def read_micrograph(
    path: str | os.PathLike, pixel_size_nm: float | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> Micrograph:
    """Read one micrograph or mask as a 2-D grey array with its metadata.

    Args:
        path: a TIFF (8/16/32-bit, float, palette, RGB/RGBA), PNG, JPEG or BMP file.
        pixel_size_nm: overrides the pixel size found in the file's metadata.
        max_pixels: files whose header claims more pixels are refused before they are decoded.

    Returns:
        The 2-D array in its stored dtype and a meta dict (see the module docstring).

    Raises:
        MicrographReadError: the file is missing (or a broken symbolic link), empty, truncated, not an image,
            not a single 2-D image, or larger than ``max_pixels``.
    """
    path = check_micrograph_file(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        array, meta = _read_tiff(path, max_pixels)
    elif suffix in PIL_SUFFIXES:
        array, meta = _read_with_pil(path, max_pixels)
    else:
        raise MicrographReadError(path, f"unsupported file type {suffix!r}: expected one of {MICROGRAPH_SUFFIXES}")
    array, grey_conversion = _to_grey(_drop_singleton_axes(array), path)
    if meta["colour_conversion"] == "none":
        meta["colour_conversion"] = grey_conversion
    if meta["colour_conversion"] != "none":
        logger.info("%s: %s image converted to one grey channel", path, meta["colour_conversion"])
    if array.ndim != 2 or min(array.shape) == 0:
        raise MicrographReadError(path, f"holds an array of shape {tuple(array.shape)}: expected one 2-D image")
    _check_values(array, path)
    if pixel_size_nm is not None:
        if not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
            raise ValueError(f"pixel_size_nm must be positive, got {pixel_size_nm}.")
        meta["pixel_size_nm"], meta["pixel_size_source"] = float(pixel_size_nm), "given"
    meta.setdefault("pixel_size_nm", UNKNOWN_PIXEL_SIZE)
    meta.setdefault("pixel_size_source", "unknown")
    meta["source_dtype"] = str(array.dtype)
    meta["source_max"] = _source_max(array.dtype)
    return Micrograph(array=array, meta=meta)


class MicrographReader(ImageReader):
    """MONAI ``ImageReader`` for SEM/TEM micrographs: ``LoadImage(reader=MicrographReader())``.

    Args:
        pixel_size_nm: overrides the pixel size read from the files' metadata.
    """

    def __init__(self, pixel_size_nm: float | None = None) -> None:
        super().__init__()
        if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
            raise ValueError(f"pixel_size_nm must be positive, got {pixel_size_nm}.")
        self.pixel_size_nm = pixel_size_nm

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file name ends in a supported micrograph suffix."""
        return all(str(name).lower().endswith(MICROGRAPH_SUFFIXES) for name in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs) -> Micrograph:
        """Read one micrograph (a sequence must hold exactly one path)."""
        paths = ensure_tuple(data)
        if len(paths) != 1:
            raise ValueError(f"MicrographReader reads one file at a time, got {len(paths)}: {paths}.")
        return read_micrograph(paths[0], pixel_size_nm=self.pixel_size_nm)

    def get_data(self, img: Micrograph) -> tuple[np.ndarray, dict]:
        """Return the (H, W) array and a meta dict that MONAI's ``EnsureChannelFirst`` understands."""
        meta = dict(img.meta)
        meta["spatial_shape"] = np.asarray(img.array.shape)
        meta["original_channel_dim"] = "no_channel"
        return img.array, meta
