"""Reading a large micrograph region by region, so that memory depends on the region, not on the image.

:func:`open_micrograph` returns a :class:`MicrographSource` whose :meth:`~MicrographSource.read` returns one
rectangle of the grey micrograph in its stored dtype:

- an uncompressed grey TIFF is memory-mapped (``tifffile.memmap``); every read maps the file, copies the
  rectangle and unmaps it again, so pages touched by earlier reads do not stay in the resident memory;
- a compressed or colour TIFF (strips or tiles) is decoded one strip or tile at a time into an uncompressed
  scratch file (a ``.npy`` in ``scratch_dir``, deleted on close) converted to grey as the bundle's reader does,
  and then read like the uncompressed case; this costs disk, the size of the grey image, not memory;
- anything else (PNG, JPEG, BMP, planar-separate colour TIFFs) is read whole with the bundle's
  :func:`~rformer_monai.transforms.read_micrograph`: memory is then the size of the image.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rformer_monai.transforms.io import (
    TIFF_SUFFIXES,
    MicrographReadError,
    _to_grey,
    read_micrograph,
)

logger = logging.getLogger(__name__)

SCRATCH_SUFFIX = ".npy"
PALETTE_8BIT_DIVISOR = 257  # 16-bit palette colours -> 8 bits, as the bundle's reader converts them


class MicrographSource:
    """A 2-D grey micrograph of ``shape`` (H, W) and ``dtype``, read one rectangle at a time.

    Args:
        path: the micrograph file (named in messages and in the output's name).
        shape: (H, W).
        dtype: the stored dtype.
        array: the whole image, when it is held in memory.
        memmap_path: the file holding the raw pixels, when they are memory-mapped instead.
        memmap_offset: byte offset of the first pixel in ``memmap_path``.
        scratch_path: a temporary file deleted by :meth:`close`.
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
    ) -> None:
        if (array is None) == (memmap_path is None):
            raise ValueError("MicrographSource needs exactly one of array and memmap_path.")
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self._array = array
        self._memmap_path = None if memmap_path is None else Path(memmap_path)
        self._memmap_offset = memmap_offset
        self._scratch_path = None if scratch_path is None else Path(scratch_path)

    @property
    def in_memory(self) -> bool:
        """Whether the whole image is held in memory (formats that cannot be read region by region)."""
        return self._array is not None

    @contextmanager
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


def _grey_segment(segment: np.ndarray, page, path: Path) -> np.ndarray:
    """One decoded TIFF strip or tile (length, width, samples) as grey, converted like the bundle's reader."""
    import tifffile

    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        colours = page.colormap.T[segment[..., 0]]
        segment = (colours // PALETTE_8BIT_DIVISOR).astype(np.uint8) if page.bitspersample <= 8 else colours
    elif segment.shape[-1] == 1:
        segment = segment[..., 0]
    return _to_grey(segment, path)[0]


def _decode_to_scratch(page, path: Path, scratch_dir: Path) -> MicrographSource:
    """Decode ``page`` strip by strip (or tile by tile) into a grey ``.npy`` memory map in ``scratch_dir``."""
    import tifffile

    height, width = int(page.imagelength), int(page.imagewidth)
    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        dtype = np.dtype(np.uint8) if page.bitspersample <= 8 else page.colormap.dtype
    else:
        dtype = page.dtype
    handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=SCRATCH_SUFFIX, dir=scratch_dir)
    os.close(handle)
    try:
        grey = np.lib.format.open_memmap(scratch, mode="w+", dtype=dtype, shape=(height, width))
        offset = grey.offset
        for segment, index, _ in page.segments():
            row, column = index[2], index[3]
            if segment is None:  # an empty segment reads as 0
                continue
            decoded = _grey_segment(segment[0], page, path)
            rows, columns = min(decoded.shape[0], height - row), min(decoded.shape[1], width - column)
            grey[row : row + rows, column : column + columns] = decoded[:rows, :columns]
        grey.flush()
        del grey
    except BaseException:
        os.remove(scratch)
        raise
    logger.info("%s: decoded to the scratch file %s", path, scratch)
    return MicrographSource(
        path, (height, width), dtype, memmap_path=scratch, memmap_offset=offset, scratch_path=scratch
    )


def open_micrograph(path: str | os.PathLike, scratch_dir: str | os.PathLike | None = None) -> MicrographSource:
    """Open a micrograph for reading region by region (see the module docstring for what each format costs).

    Args:
        path: a TIFF (8/16/32-bit, float, palette, RGB/RGBA; uncompressed or compressed), PNG, JPEG or BMP file.
        scratch_dir: folder of the scratch file a compressed or colour TIFF is decoded to (default: the
            system's temporary folder).

    Returns:
        A :class:`MicrographSource`; use it as a context manager so that its scratch file is deleted.

    Raises:
        MicrographReadError: the file is missing, unreadable or not a single 2-D image.
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        micrograph = read_micrograph(path)  # raises the bundle's errors for missing or unsupported files
        return MicrographSource(path, micrograph.array.shape, micrograph.array.dtype, array=micrograph.array)
    unreadable = (tifffile.TiffFileError, ValueError, IndexError, EOFError)
    with contextlib.ExitStack() as stack:
        try:
            tif = stack.enter_context(tifffile.TiffFile(path))
            pages, page = len(tif.pages), tif.pages.first
        except (*unreadable, OSError) as exc:
            raise MicrographReadError(path, f"is not a readable TIFF (truncated or corrupt?): {exc}") from exc
        if pages > 1:
            raise MicrographReadError(
                path, f"is a multi-page TIFF ({pages} pages): only single-page 2-D micrographs are supported"
            )
        grey = page.samplesperpixel == 1 and page.photometric != tifffile.PHOTOMETRIC.PALETTE
        if grey and page.is_memmappable and len(page.shape) == 2:
            offset = int(page.dataoffsets[0])
            dtype = page.dtype.newbyteorder(tif.byteorder)
            return MicrographSource(path, page.shape, dtype, memmap_path=path, memmap_offset=offset)
        contiguous = page.samplesperpixel == 1 or page.planarconfig == tifffile.PLANARCONFIG.CONTIG
        if contiguous and page.imagedepth == 1:
            directory = Path(tempfile.gettempdir() if scratch_dir is None else scratch_dir)
            directory.mkdir(parents=True, exist_ok=True)
            try:
                return _decode_to_scratch(page, path, directory)
            except MicrographReadError:
                raise
            except unreadable as exc:
                raise MicrographReadError(path, f"could not be decoded (truncated or corrupt?): {exc}") from exc
    logger.warning("%s: read whole into memory (this TIFF layout cannot be read region by region)", path)
    micrograph = read_micrograph(path)
    return MicrographSource(path, micrograph.array.shape, micrograph.array.dtype, array=micrograph.array)
