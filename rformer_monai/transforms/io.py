"""Reading SEM/TEM micrographs and masks: grey channel, pixel size from the instrument's metadata.

One opener, :func:`open_micrograph`, checks the file, decodes it and reads its pixel size; it returns a
:class:`MicrographSource` that reads the grey image whole or one rectangle at a time:

- :func:`read_micrograph` (and :class:`MicrographReader`, which plugs it into MONAI's ``LoadImage``) decodes
  the whole image into memory, refusing files whose header claims more than ``MAX_IMAGE_PIXELS`` pixels;
- the block-streamed inference of large micrographs (``rformer_monai.inference``) opens them region by region:
  an uncompressed grey TIFF is memory-mapped (every read maps the file, copies the rectangle and unmaps it again,
  so pages touched by earlier reads do not stay in the resident memory); a compressed or colour TIFF (strips or
  tiles) is decoded one strip or tile at a time into an uncompressed grey scratch file (a ``.npy`` in
  ``scratch_dir``, deleted on close), which costs disk, not memory; anything else (PNG, JPEG, BMP,
  planar-separate colour TIFFs) is decoded whole into memory.

Either way the grey values and the ``meta`` are the same. Whole reads give a channel-first ``MetaTensor`` (through
``LoadImage``) whose ``meta`` holds:

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
import tempfile
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
PALETTE_8BIT_DIVISOR = 257
"""16-bit TIFF palette colours of an 8-bit palette image -> 8 bits (65535 / 255)."""
SCRATCH_SUFFIX = ".npy"
GREY_OR_COLOUR_SAMPLES = (1, 3, 4)
"""Samples per pixel of the TIFFs decoded strip by strip: grey (or palette indices), RGB, RGBA."""
UNREADABLE_TIFF = "is not a readable TIFF (truncated or corrupt?)"
UNREADABLE_IMAGE = "is not a readable image (truncated or not an image?)"


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


def _check_pixel_size_argument(pixel_size_nm: float | None) -> None:
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be positive, got {pixel_size_nm}.")


# ------------------------------------------------------------------ pixel size from TIFF metadata
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


def _tiff_pixel_size(tif) -> dict[str, Any]:
    """``pixel_size_nm`` and ``pixel_size_source`` from the first metadata source that has a positive one, else {}."""
    for source, reader in TIFF_PIXEL_SIZE_SOURCES:
        try:
            pixel_size_nm = reader(tif)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            pixel_size_nm = None
        if pixel_size_nm is not None and pixel_size_nm > 0:
            return {"pixel_size_nm": pixel_size_nm, "pixel_size_source": source}
    return {}


# ------------------------------------------------------------------ grey values
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


def _tiff_to_grey(pixels: np.ndarray, page, path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Decoded pixels of a TIFF page, or of one of its strips or tiles, as grey: palette indices (rows, columns)
    through the page's colour map, RGB(A) samples (rows, columns, samples) by luma."""
    import tifffile

    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        colours = page.colormap.T[pixels]  # (rows, columns, 3) uint16 palette colours
        colours = (colours // PALETTE_8BIT_DIVISOR).astype(np.uint8) if page.bitspersample <= 8 else colours
        return _to_grey(colours, path)[0], "palette"
    return _to_grey(pixels, path)


def _grey_dtype(page) -> np.dtype:
    """The dtype of a TIFF page's grey values (palette images: of their colours)."""
    import tifffile

    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        return np.dtype(np.uint8) if page.bitspersample <= 8 else page.colormap.dtype
    return page.dtype


def _drop_singleton_axes(array: np.ndarray) -> np.ndarray:
    """Drop length-1 page and sample axes ((1, H, W), (H, W, 1), (1, H, W, 3)), never the image's own height or
    width: a one-row RGB image (1, W, 3) stays colour data."""
    while array.ndim > 2 and array.shape[0] == 1 and not (array.ndim == 3 and array.shape[-1] in (3, 4)):
        array = array[0]
    while array.ndim > 2 and array.shape[-1] == 1:
        array = array[..., 0]
    return array


def _check_dtype(dtype: np.dtype, path: str | os.PathLike) -> None:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise MicrographReadError(path, f"holds {dtype} values: only integer or real grey values are supported")


def _check_values(array: np.ndarray, path: str | os.PathLike) -> None:
    """Reject grey values no pipeline can use (complex, not finite); warn about a constant image."""
    _check_dtype(array.dtype, path)
    not_finite = int(np.count_nonzero(~np.isfinite(array))) if np.issubdtype(array.dtype, np.floating) else 0
    check_grey_values(not_finite, array.min(), array.max(), path)


def check_grey_values(not_finite: int, minimum: float, maximum: float, path: str | os.PathLike) -> None:
    """Reject an image with ``not_finite`` pixels that are NaN or infinite; warn about a constant one (``minimum``
    equal to ``maximum``). For images read a region at a time, which count and compare as they go.

    Raises:
        MicrographReadError: naming the file and the number of such pixels.
    """
    if not_finite:
        raise MicrographReadError(
            path, f"holds {not_finite} pixels that are not finite numbers (NaN or infinity): replace them first"
        )
    if minimum == maximum:
        logger.warning("%s: every pixel has the value %s (a blank, constant image)", path, minimum)


def _source_max(dtype: np.dtype) -> float:
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0  # floating-point images are taken to be scaled to [0, 1]


# ------------------------------------------------------------------ the file
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


@contextlib.contextmanager
def _decoding(path: Path, problem: str) -> Iterator[None]:
    """Any error of a decoder fed a damaged file (struct.error, KeyError, ...) as a ``MicrographReadError``
    naming ``path`` and ``problem``."""
    try:
        yield
    except MicrographReadError:
        raise
    except Exception as exc:
        raise MicrographReadError(path, f"{problem}: {exc}") from exc


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


# ------------------------------------------------------------------ the opened micrograph
class MicrographSource:
    """A 2-D grey micrograph of ``shape`` (H, W) and ``dtype`` with its ``meta``, read whole or one rectangle at
    a time; made by :func:`open_micrograph`.

    Args:
        path: the micrograph file (named in messages and in the output's name).
        shape: (H, W).
        dtype: the stored dtype.
        array: the whole image, when it is held in memory.
        memmap_path: the file holding the raw pixels, when they are memory-mapped instead.
        memmap_offset: byte offset of the first pixel in ``memmap_path``.
        scratch_path: a temporary file deleted by :meth:`close`.
        meta: pixel size, stored dtype and colour conversion (see the module docstring).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, int],
        dtype: np.dtype,
        array: np.ndarray | None = None,
        memmap_path: str | os.PathLike | None = None,
        memmap_offset: int = 0,
        scratch_path: str | os.PathLike | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if (array is None) == (memmap_path is None):
            raise ValueError("MicrographSource needs exactly one of array and memmap_path.")
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.meta = dict(meta or {})
        self._array = array
        self._memmap_path = None if memmap_path is None else Path(memmap_path)
        self._memmap_offset = memmap_offset
        self._scratch_path = None if scratch_path is None else Path(scratch_path)

    @property
    def in_memory(self) -> bool:
        """Whether the whole image is held in memory (formats that cannot be read region by region)."""
        return self._array is not None

    @contextlib.contextmanager
    def mapped(self) -> Iterator[np.ndarray]:
        """The whole image as an array: the in-memory one, or a read-only memory map released on exit."""
        if self._array is not None:
            yield self._array
            return
        mapping = np.memmap(self._memmap_path, dtype=self.dtype, mode="r", offset=self._memmap_offset, shape=self.shape)
        try:
            yield mapping
        finally:
            del mapping  # unmapped once the caller's views are gone: the pages read leave the resident memory

    def read(self, rows: slice, columns: slice) -> np.ndarray:
        """A copy of ``image[rows, columns]`` in the stored dtype."""
        with self.mapped() as image:
            return np.array(image[rows, columns], copy=True)

    def close(self) -> None:
        """Delete the scratch file, if any."""
        if self._scratch_path is not None and self._scratch_path.exists():
            self._scratch_path.unlink()
        self._scratch_path = None

    def __enter__(self) -> MicrographSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _in_memory(path: Path, array: np.ndarray, meta: dict[str, Any]) -> MicrographSource:
    """A source holding a decoded image: grey, 2-D, with values every pipeline can use."""
    if array.ndim != 2 or min(array.shape) == 0:
        raise MicrographReadError(path, f"holds an array of shape {tuple(array.shape)}: expected one 2-D image")
    _check_values(array, path)
    return MicrographSource(path, array.shape, array.dtype, array=array, meta=meta)


def _decode_tiff_page(page, path: Path, max_pixels: int, meta: dict[str, Any]) -> MicrographSource:
    """The whole page decoded into memory as grey."""
    import tifffile

    check_pixel_count(path, (page.imagelength, page.imagewidth), max_pixels)
    with _decoding(path, UNREADABLE_TIFF):
        array = page.asarray()
        if page.photometric == tifffile.PHOTOMETRIC.RGB and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            array = np.moveaxis(array, 0, -1)  # RGB stored as separate planes: (3, H, W) -> (H, W, 3)
        array, meta["colour_conversion"] = _tiff_to_grey(_drop_singleton_axes(array), page, path)
    return _in_memory(path, array, meta)


def _decode_to_scratch(page, path: Path, scratch_dir: Path, meta: dict[str, Any]) -> MicrographSource:
    """Decode ``page`` strip by strip (or tile by tile) into a grey ``.npy`` memory map in ``scratch_dir``."""
    height, width = int(page.imagelength), int(page.imagewidth)
    dtype = _grey_dtype(page)
    _check_dtype(dtype, path)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=SCRATCH_SUFFIX, dir=scratch_dir)
    os.close(handle)
    try:
        grey = np.lib.format.open_memmap(scratch, mode="w+", dtype=dtype, shape=(height, width))
        offset = grey.offset
        with _decoding(path, UNREADABLE_TIFF):
            for segment, index, _ in page.segments():
                row, column = index[2], index[3]
                if segment is None:  # an empty segment reads as 0
                    continue
                pixels = segment[0]  # (rows, columns, samples)
                pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
                decoded, meta["colour_conversion"] = _tiff_to_grey(pixels, page, path)
                rows, columns = min(decoded.shape[0], height - row), min(decoded.shape[1], width - column)
                grey[row : row + rows, column : column + columns] = decoded[:rows, :columns]
        grey.flush()
        del grey
    except BaseException:
        os.remove(scratch)
        raise
    logger.info("%s: decoded to the scratch file %s", path, scratch)
    return MicrographSource(
        path, (height, width), dtype, memmap_path=scratch, memmap_offset=offset, scratch_path=scratch, meta=meta
    )


def _open_tiff(path: Path, scratch_dir: str | os.PathLike | None, in_memory: bool, max_pixels: int) -> MicrographSource:
    """A memory-mapped, scratch-file or (``in_memory``, or a layout that cannot be read by region) in-memory source."""
    import tifffile

    with contextlib.ExitStack() as stack:
        with _decoding(path, UNREADABLE_TIFF):
            tif = stack.enter_context(tifffile.TiffFile(path))
            pages = len(tif.pages)
            if pages > 1:
                raise MicrographReadError(
                    path, f"is a multi-page TIFF ({pages} pages): only single-page 2-D micrographs are supported"
                )
            page = tif.pages.first
            meta = {"colour_conversion": "none", **_tiff_pixel_size(tif)}
        if not in_memory:
            grey = page.samplesperpixel == 1 and page.photometric != tifffile.PHOTOMETRIC.PALETTE
            if grey and page.is_memmappable and len(page.shape) == 2:
                dtype = page.dtype.newbyteorder(tif.byteorder)
                _check_dtype(dtype, path)
                offset = int(page.dataoffsets[0])
                return MicrographSource(path, page.shape, dtype, memmap_path=path, memmap_offset=offset, meta=meta)
            contiguous = page.samplesperpixel == 1 or page.planarconfig == tifffile.PLANARCONFIG.CONTIG
            if contiguous and page.imagedepth == 1 and page.samplesperpixel in GREY_OR_COLOUR_SAMPLES:
                directory = Path(tempfile.gettempdir()) if scratch_dir is None else Path(scratch_dir)
                return _decode_to_scratch(page, path, directory, meta)
            logger.warning("%s: read whole into memory (this TIFF layout cannot be read region by region)", path)
        return _decode_tiff_page(page, path, max_pixels, meta)


def _open_with_pil(path: Path, max_pixels: int) -> MicrographSource:
    from PIL import Image

    with _decoding(path, UNREADABLE_IMAGE), _pil_pixel_limit(None), Image.open(path) as image:
        # Pillow's own limit (89e6) refuses montages: ours applies instead
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
    array, grey_conversion = _to_grey(_drop_singleton_axes(array), path)
    return _in_memory(path, array, {"colour_conversion": grey_conversion if conversion == "none" else conversion})


def open_micrograph(
    path: str | os.PathLike,
    scratch_dir: str | os.PathLike | None = None,
    pixel_size_nm: float | None = None,
    in_memory: bool = False,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> MicrographSource:
    """Open a micrograph or mask as a grey 2-D image with its metadata (see the module docstring for what each
    format costs).

    Args:
        path: a TIFF (8/16/32-bit, float, palette, RGB/RGBA; uncompressed or compressed), PNG, JPEG or BMP file.
        scratch_dir: folder of the scratch file a compressed or colour TIFF is decoded to (default: the
            system's temporary folder).
        pixel_size_nm: overrides the pixel size found in the file's metadata.
        in_memory: decode the whole image into memory, whatever its format (what :func:`read_micrograph` does).
        max_pixels: a file decoded into memory whose header claims more pixels is refused before it is decoded.

    Returns:
        A :class:`MicrographSource`; use it as a context manager so that its scratch file is deleted.

    Raises:
        MicrographReadError: the file is missing (or a broken symbolic link), empty, truncated, not an image,
            not a single 2-D image, or decoded into memory and larger than ``max_pixels``.
        ValueError: ``pixel_size_nm`` is not a positive number.
    """
    _check_pixel_size_argument(pixel_size_nm)
    path = check_micrograph_file(path)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        source = _open_tiff(path, scratch_dir, in_memory, max_pixels)
    elif suffix in PIL_SUFFIXES:
        source = _open_with_pil(path, max_pixels)
    else:
        raise MicrographReadError(path, f"unsupported file type {suffix!r}: expected one of {MICROGRAPH_SUFFIXES}")
    meta = source.meta
    if meta["colour_conversion"] != "none":
        logger.info("%s: %s image converted to one grey channel", path, meta["colour_conversion"])
    if pixel_size_nm is not None:
        meta["pixel_size_nm"], meta["pixel_size_source"] = float(pixel_size_nm), "given"
    meta.setdefault("pixel_size_nm", UNKNOWN_PIXEL_SIZE)
    meta.setdefault("pixel_size_source", "unknown")
    meta["source_dtype"] = str(source.dtype.newbyteorder("="))
    meta["source_max"] = _source_max(source.dtype)
    return source


def read_micrograph(
    path: str | os.PathLike, pixel_size_nm: float | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> Micrograph:
    """Read one micrograph or mask whole as a 2-D grey array with its metadata: :func:`open_micrograph` decoding
    into memory.

    Args:
        path: a TIFF (8/16/32-bit, float, palette, RGB/RGBA), PNG, JPEG or BMP file.
        pixel_size_nm: overrides the pixel size found in the file's metadata.
        max_pixels: files whose header claims more pixels are refused before they are decoded.

    Returns:
        The 2-D array in its stored dtype and a meta dict (see the module docstring).

    Raises:
        MicrographReadError: the file is missing (or a broken symbolic link), empty, truncated, not an image,
            not a single 2-D image, or larger than ``max_pixels``.
        ValueError: ``pixel_size_nm`` is not a positive number.
    """
    source = open_micrograph(path, pixel_size_nm=pixel_size_nm, in_memory=True, max_pixels=max_pixels)
    with source.mapped() as array:
        return Micrograph(array=array, meta=source.meta)


class MicrographReader(ImageReader):
    """MONAI ``ImageReader`` for SEM/TEM micrographs: ``LoadImage(reader=MicrographReader())``.

    Args:
        pixel_size_nm: overrides the pixel size read from the files' metadata.
    """

    def __init__(self, pixel_size_nm: float | None = None) -> None:
        super().__init__()
        _check_pixel_size_argument(pixel_size_nm)
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
