"""Reading image stacks (FIB-SEM serial sections, tomograms) with their voxel spacing, one z-slice at a time.

A :class:`VolumeSource` gives the stack's shape ``(z, y, x)``, its spacing in nm ``(z, y, x)`` and its slices.
Multi-page TIFF pages and NIfTI slices are read on demand with ordinary file reads (not memory maps, whose
touched pages would count to the process's memory), so that a stack larger than the memory can be segmented; MHA and NRRD are read whole through ITK, which is imported
only here, when such a file is opened.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rformer_monai.transforms.io import NM_PER_UNIT

logger = logging.getLogger(__name__)

TIFF_STACK_SUFFIXES = (".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
STACK_SUFFIXES = TIFF_STACK_SUFFIXES + NIFTI_SUFFIXES + ITK_SUFFIXES
SPATIAL_AXES = ("z", "y", "x")
UNKNOWN_SPACING_NM = (1.0, 1.0, 1.0)
"""The spacing of a stack without one in its metadata: one "nm" per voxel, i.e. sizes in voxels (logged)."""
# NIfTI xyzt_units spatial codes (nibabel's names) -> nm
NIFTI_NM_PER_UNIT = {"meter": 1e9, "mm": 1e6, "micron": 1e3}
DEFAULT_ITK_UNIT = "nm"
"""MHA/NRRD headers carry no length unit (medical readers assume mm): their spacing is taken as nm unless
the NRRD ``space units`` field or ``itk_spacing_unit`` says otherwise."""


class StackReadError(ValueError):
    """A stack cannot be read: the message names the file and the reason."""


@dataclass
class VolumeSource:
    """A stack, read one z-slice at a time.

    Attributes:
        path: the file.
        shape: ``(z, y, x)`` voxels.
        spacing_nm: ``(z, y, x)`` voxel spacing in nm.
        dtype: the stored voxel type.
        spacing_source: where the spacing came from (``"imagej"``, ``"nifti"``, ``"itk"``, ``"override"``,
            ``"unknown"``).
    """

    path: Path
    shape: tuple[int, int, int]
    spacing_nm: tuple[float, float, float]
    dtype: np.dtype
    spacing_source: str
    _read_slice: Callable[[int], np.ndarray] = field(repr=False)
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def read_slice(self, index: int) -> np.ndarray:
        """The ``(y, x)`` slice ``index`` in its stored dtype."""
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"slice index must be in [0, {self.shape[0]}), got {index}.")
        return np.asarray(self._read_slice(index))

    def read(self) -> np.ndarray:
        """The whole ``(z, y, x)`` stack in memory (for small stacks and tests)."""
        return np.stack([self.read_slice(index) for index in range(self.shape[0])])

    def close(self) -> None:
        self._close()

    def __enter__(self) -> VolumeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stack_suffix(path: str | os.PathLike) -> str | None:
    """The stack suffix of ``path`` (``.nii.gz`` counts as one), or None for other files."""
    name = Path(path).name.lower()
    for suffix in sorted(STACK_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def stack_stem(path: str | os.PathLike) -> str:
    """The output name stem of a stack: its file name without the stack suffix (``a.nii.gz`` -> ``a``)."""
    name = Path(path).name
    suffix = stack_suffix(path)
    return name[: -len(suffix)] if suffix else Path(path).stem


def find_stacks(dataset_dir: str | os.PathLike) -> list[Path]:
    """Every stack under ``dataset_dir`` (searched recursively), or ``dataset_dir`` itself when it is a file.

    Raises:
        FileNotFoundError: ``dataset_dir`` does not exist, or holds no stack.
    """
    root = Path(dataset_dir)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {str(root)!r}: no such file or folder.")
    stacks = sorted(path for path in root.rglob("*") if path.is_file() and stack_suffix(path) is not None)
    if not stacks:
        raise FileNotFoundError(f"dataset_dir {str(root)!r} holds no stack ({', '.join(STACK_SUFFIXES)}).")
    return stacks


def _check_spacing(spacing_nm: Sequence[float], name: str = "spacing_nm") -> tuple[float, float, float]:
    values = tuple(float(value) for value in spacing_nm)
    if len(values) != 3 or not all(math.isfinite(value) and value > 0 for value in values):
        raise ValueError(f"{name} must be three positive numbers (z, y, x) in nm, got {spacing_nm!r}.")
    return values  # type: ignore[return-value]


def _length_nm(value: float, unit: str) -> float | None:
    scale = NM_PER_UNIT.get(unit.strip().lower().replace("\\u00b5", "µ"))
    return None if scale is None or not value else value * scale


# ------------------------------------------------------------------ TIFF
def _imagej_spacing_nm(tif) -> tuple[float, float, float] | None:
    """(z, y, x) spacing in nm from ImageJ's ``unit`` and ``spacing`` and the X/YResolution tags."""
    metadata = tif.imagej_metadata or {}
    page = tif.pages.first
    unit = str(metadata.get("unit", ""))
    if "XResolution" not in page.tags or not unit:
        return None
    x_num, x_den = page.tags["XResolution"].value
    y_num, y_den = page.tags["YResolution"].value if "YResolution" in page.tags else (x_num, x_den)
    if not x_num or not y_num:
        return None
    x_nm, y_nm = _length_nm(x_den / x_num, unit), _length_nm(y_den / y_num, unit)
    if x_nm is None or y_nm is None:
        return None
    z_nm = _length_nm(float(metadata["spacing"]), unit) if "spacing" in metadata else None
    if z_nm is None:
        logger.warning("%s: no ImageJ slice spacing; the slices are taken %.4g nm apart (the pixel size)",
                       tif.filename, x_nm)
        z_nm = x_nm
    return z_nm, y_nm, x_nm


def _open_tiff(path: Path) -> tuple[tuple[int, int, int], np.dtype, Any, Callable, Callable]:
    import tifffile

    tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        shape = tuple(int(side) for side in series.shape)
        axes = series.axes
        # drop singleton channel/time axes; keep Z (or I, the pages) Y X
        squeezed = [(side, axis) for side, axis in zip(shape, axes) if side > 1 or axis in "YX"]
        if len(squeezed) == 2:
            squeezed = [(1, "Z")] + squeezed
        if len(squeezed) != 3 or [axis for _, axis in squeezed][1:] != ["Y", "X"]:
            raise StackReadError(f"{path}: a stack needs axes Z (pages), Y, X; the file has {axes} of shape {shape}.")
        spacing = _imagej_spacing_nm(tif)
        dtype = series.dtype
        pages = tif.pages

        def read_slice(index: int) -> np.ndarray:
            return pages[index].asarray().reshape(squeezed[1][0], squeezed[2][0])

        if len(pages) != squeezed[0][0]:
            raise StackReadError(f"{path}: {len(pages)} pages for {squeezed[0][0]} slices (interleaved channels?).")
        return tuple(side for side, _ in squeezed), dtype, spacing, read_slice, tif.close
    except Exception:
        tif.close()
        raise


# ------------------------------------------------------------------ NIfTI
def _open_nifti(path: Path):
    import nibabel

    image = nibabel.load(str(path), mmap=False)  # slices read with file reads
    if len(image.shape) < 3 or any(side != 1 for side in image.shape[3:]):
        raise StackReadError(f"{path}: a stack needs three axes (x, y, z), the file has shape {image.shape}.")
    spatial_unit = image.header.get_xyzt_units()[0]
    zooms = [float(value) for value in image.header.get_zooms()[:3]]
    scale = NIFTI_NM_PER_UNIT.get(spatial_unit)
    spacing = None if scale is None else (zooms[2] * scale, zooms[1] * scale, zooms[0] * scale)
    proxy = image.dataobj
    x_size, y_size, z_size = (int(side) for side in image.shape[:3])

    def read_slice(index: int) -> np.ndarray:
        data = proxy[..., index] if len(image.shape) == 3 else proxy[:, :, index, 0]
        return np.asarray(data).T  # (x, y) -> (y, x)

    return (z_size, y_size, x_size), np.dtype(image.get_data_dtype()), spacing, read_slice, (lambda: None)


# ------------------------------------------------------------------ MHA / NRRD
def _open_itk(path: Path, unit: str):
    try:
        import itk  # imported here only: the 2-D path never needs it
    except ImportError as exc:
        raise StackReadError(
            f"{path}: MHA/NRRD stacks need ITK: pip install 'rformer-monai[volumes]' (or save the stack as TIFF/NIfTI)."
        ) from exc

    image = itk.imread(str(path))
    volume = itk.array_from_image(image)  # (z, y, x)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3:
        raise StackReadError(f"{path}: a stack needs three axes, the file has shape {volume.shape}.")
    spacing_xyz = [float(value) for value in image.GetSpacing()]
    metadata = image.GetMetaDataDictionary()
    if metadata.HasKey("space units"):  # NRRD: e.g. "nm" "nm" "nm"
        unit = str(metadata["space units"]).replace('"', " ").split()[0]
    scale = NM_PER_UNIT.get(unit)
    if scale is None:
        raise StackReadError(f"{path}: spacing unit {unit!r} is not one of {sorted(NM_PER_UNIT)}.")
    spacing = tuple(value * scale for value in reversed(spacing_xyz[:3]))
    if len(spacing) == 2:
        spacing = (spacing[0],) + spacing
    return volume.shape, volume.dtype, spacing, (lambda index: volume[index]), (lambda: None)


def open_stack(
    path: str | os.PathLike, spacing_nm: Sequence[float] | None = None, itk_spacing_unit: str = DEFAULT_ITK_UNIT
) -> VolumeSource:
    """Open a stack for reading slice by slice, with its ``(z, y, x)`` voxel spacing in nm.

    Args:
        path: a multi-page TIFF (spacing from ImageJ's ``unit``, ``spacing`` and the resolution tags), NIfTI
            (``.nii``, ``.nii.gz``: ``pixdim`` and ``xyzt_units``), MHA or NRRD (through ITK; see
            :data:`DEFAULT_ITK_UNIT`).
        spacing_nm: ``(z, y, x)`` spacing in nm for this stack, overriding the file's.
        itk_spacing_unit: the unit of an MHA/NRRD file's spacing when the file names none.

    Raises:
        StackReadError: the file is not a readable 3-D stack.
    """
    path = Path(path)
    suffix = stack_suffix(path)
    if suffix is None:
        raise StackReadError(f"{path}: not a stack file ({', '.join(STACK_SUFFIXES)}).")
    if not path.is_file():
        raise StackReadError(f"{path}: no such file.")
    override = None if spacing_nm is None else _check_spacing(spacing_nm)
    try:
        if suffix in TIFF_STACK_SUFFIXES:
            shape, dtype, spacing, read_slice, close = _open_tiff(path)
            origin = "imagej"
        elif suffix in NIFTI_SUFFIXES:
            shape, dtype, spacing, read_slice, close = _open_nifti(path)
            origin = "nifti"
        else:
            shape, dtype, spacing, read_slice, close = _open_itk(path, itk_spacing_unit)
            origin = "itk"
    except StackReadError:
        raise
    except Exception as exc:  # a corrupt or unsupported file: one line naming it
        raise StackReadError(f"{path}: cannot be read as a stack ({type(exc).__name__}: {exc}).") from exc
    if override is not None:
        spacing, origin = override, "override"
    elif spacing is None:
        logger.warning("%s: no voxel spacing in the file; sizes are in voxels (give spacing_nm)", path)
        spacing, origin = UNKNOWN_SPACING_NM, "unknown"
    return VolumeSource(
        path=path, shape=tuple(int(side) for side in shape), spacing_nm=_check_spacing(spacing),
        dtype=np.dtype(dtype), spacing_source=origin, _read_slice=read_slice, _close=close,
    )
