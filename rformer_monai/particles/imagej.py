"""The particle table users know from ImageJ's *Analyze Particles*, in nm and px, with its provenance.

:func:`particle_table` measures every labelled particle and returns a table of columns (column name ->
1-D array, one row per particle, ordered by label) that ``pandas.DataFrame`` or a CSV writer takes as is.
Every length comes twice, ``<Name>_nm`` and ``<Name>_px`` side by side (the ``_nm`` cells are NaN where the
pixel size is unknown), so one header serves calibrated and uncalibrated images alike. The definitions
follow ImageJ's (docs/measurements.md gives each, with where ours differs):

- ``Area``: pixel count times the pixel area; ``Perim``: Crofton perimeter estimate;
- ``Feret`` / ``MinFeret``: largest / smallest caliper width of the particle's outline, ``FeretAngle``
  the direction of the largest one (degrees, 0-180, counter-clockwise from the x axis, y up as in ImageJ);
- ``Major`` / ``Minor`` / ``Angle``: the ellipse of the particle's second moments scaled to its area
  (ImageJ's ``EllipseFitter``: a twelfth of a pixel² added to each pixel's variance);
- ``Circ`` = 4 pi Area / Perim², ``AR`` = Major / Minor, ``Round`` = 4 Area / (pi Major²), ``Solidity`` =
  Area / convex area;
- ``X`` / ``Y``: centroid, ``BX`` / ``BY`` / ``Width`` / ``Height``: bounding rectangle, in ImageJ's
  coordinates (the top-left corner of the top-left pixel is 0, 0);
- ``Mean``: mean grey value of the particle's pixels in the micrograph as stored;
- ``ECD``: equivalent circular diameter sqrt(4 Area / pi), the size of the size distribution;
- ``touches_edge``, ``pixel_size_nm`` and ``pixel_size_source`` (where the pixel size came from).

Values are rounded for reading (:data:`DECIMALS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from skimage.measure import regionprops

from rformer_monai.particles.labelling import equivalent_circular_diameter
from rformer_monai.particles.measurement import (
    _as_labels,
    _check_pixel_size,
    _edge_flags,
    _feret_diameters,
    _outline_hull,
    _solidity,
)

__all__ = [
    "DECIMALS",
    "LENGTH_QUANTITIES",
    "PARTICLE_TABLE_COLUMNS",
    "PixelSize",
    "ecd_column",
    "particle_table",
    "table_rows",
]

PIXEL_VARIANCE = 1.0 / 12.0
"""Variance of a uniform unit pixel about its centre, added to the moments as ImageJ's EllipseFitter does."""
PIXEL_CENTRE = 0.5
"""ImageJ's coordinate of a pixel's centre relative to its top-left corner."""
DEGREES_HALF_TURN = 180.0
UNKNOWN_SOURCE = "unknown"

LENGTH_QUANTITIES: tuple[str, ...] = (
    "Perim", "Feret", "MinFeret", "Major", "Minor", "X", "Y", "BX", "BY", "Width", "Height", "ECD",
)
"""Quantities that are lengths: each gives a ``_nm`` and a ``_px`` column (``Area`` gives ``_nm2``/``_px2``)."""
_ORDER: tuple[str, ...] = (
    "label", "Area", "Perim", "Feret", "MinFeret", "FeretAngle", "Major", "Minor", "Angle", "Circ", "AR",
    "Round", "Solidity", "X", "Y", "BX", "BY", "Width", "Height", "Mean", "ECD", "touches_edge",
    "pixel_size_nm", "pixel_size_source",
)


def _column_names() -> tuple[str, ...]:
    names: list[str] = []
    for quantity in _ORDER:
        if quantity == "Area":
            names += ["Area_nm2", "Area_px2"]
        elif quantity in LENGTH_QUANTITIES:
            names += [f"{quantity}_nm", f"{quantity}_px"]
        else:
            names.append(quantity)
    return tuple(names)


PARTICLE_TABLE_COLUMNS: tuple[str, ...] = _column_names()
"""The columns of :func:`particle_table`, in order (another step may append its own, e.g. ``warning``)."""

DECIMALS: dict[str, int] = {
    "nm": 2,  # lengths and areas in nm: 0.01 nm
    "px": 3,  # lengths and areas in px
    "ratio": 4,  # Circ, AR, Round, Solidity
    "angle": 2,  # degrees
    "grey": 3,  # Mean
}
"""Decimals kept per kind of column."""
_RATIOS = ("Circ", "AR", "Round", "Solidity")
_ANGLES = ("FeretAngle", "Angle")


@dataclass(frozen=True)
class PixelSize:
    """A pixel size in nm (None where unknown) and where it came from (``zeiss``, ``given``, ``unknown``, ...)."""

    nm: float | None
    source: str = UNKNOWN_SOURCE

    @property
    def unit(self) -> str:
        """``"nm"`` where the pixel size is known, else ``"px"``."""
        return "px" if self.nm is None else "nm"


def ecd_column(pixel_size: PixelSize) -> str:
    """The ECD column the size distribution uses: ``ECD_nm`` for a calibrated image, else ``ECD_px``."""
    return f"ECD_{pixel_size.unit}"


def _angle_up(d_column: float, d_row: float) -> float:
    """Direction in degrees 0-180 of a vector (columns right, rows down), counter-clockwise with y up."""
    angle = math.degrees(math.atan2(-d_row, d_column)) % DEGREES_HALF_TURN
    return 0.0 if math.isclose(angle, DEGREES_HALF_TURN) else angle


def _feret_angle(hull: np.ndarray) -> float:
    """Direction of the largest vertex distance of a hull (K, 2) of (row, column) points."""
    if len(hull) < 2:
        return 0.0
    differences = hull[:, None, :] - hull[None, :, :]
    first, second = np.unravel_index(np.argmax((differences**2).sum(axis=-1)), differences.shape[:2])
    d_row, d_column = hull[second] - hull[first]
    return _angle_up(float(d_column), float(d_row))


def _ellipse(coordinates: np.ndarray, area: float) -> tuple[float, float, float]:
    """ImageJ's fitted ellipse of pixel (row, column) coordinates: (major, minor, angle in degrees)."""
    rows, columns = coordinates[:, 0].astype(np.float64), coordinates[:, 1].astype(np.float64)
    covariance = np.cov(np.stack([columns, rows]), bias=True) + PIXEL_VARIANCE * np.eye(2)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    small, large = float(eigenvalues[0]), float(eigenvalues[1])
    ratio = math.sqrt(large / small)
    semi_minor = math.sqrt(area / (math.pi * ratio))
    major_direction = eigenvectors[:, 1]  # (column, row)
    round_enough = math.isclose(large, small, rel_tol=1e-9)
    angle = 0.0 if round_enough else _angle_up(float(major_direction[0]), float(major_direction[1]))
    return 2.0 * semi_minor * ratio, 2.0 * semi_minor, angle


def particle_table(
    labels: np.ndarray,
    pixel_size: PixelSize,
    image: np.ndarray | None = None,
    excluded_rows_from: int | None = None,
    offset: tuple[int, int] = (0, 0),
) -> dict[str, np.ndarray]:
    """Measure every labelled particle with ImageJ's definitions, in nm and px (see the module docstring).

    Args:
        labels: (H, W) integer instance labels, 0 background.
        pixel_size: the pixel size and its source; ``nm=None`` leaves the ``_nm`` columns NaN.
        image: (H, W) micrograph for ``Mean`` (as stored, not normalised), or None (``Mean`` NaN).
        excluded_rows_from: first row of an excluded strip at the bottom (a data bar), for ``touches_edge``.
        offset: (row, column) of ``labels``' first pixel in a larger image, when ``labels`` (and ``image``) are a
            block of it: positions are given in the larger image.

    Returns:
        Column name -> 1-D array (:data:`PARTICLE_TABLE_COLUMNS`, one row per particle), rounded.

    Raises:
        ValueError: on non-integer or non-2-D labels, a non-positive pixel size or an image of another size.
    """
    labels = _as_labels(labels)
    pixel_size_nm = _check_pixel_size(pixel_size.nm)
    if image is not None and np.shape(image)[:2] != labels.shape:
        raise ValueError(f"image must have the labels' shape {labels.shape}, got {np.shape(image)}.")
    grey = None if image is None else np.asarray(image, dtype=np.float64)
    if grey is not None and grey.ndim == 3:
        grey = grey.mean(axis=-1)
    regions = regionprops(labels)
    values: dict[str, list[float]] = {name: [] for name in _ORDER[:21]}
    for region in regions:
        area = float(region.area)
        perimeter = float(region.perimeter_crofton)
        hull = _outline_hull(region.image)
        feret, min_feret = _feret_diameters(hull)
        major, minor, angle = _ellipse(region.coords, area)
        row, column = np.add(region.centroid, offset)
        top, left, bottom, right = np.add(region.bbox, (*offset, *offset))
        measured = {
            "label": region.label,
            "Area": area,
            "Perim": perimeter,
            "Feret": feret,
            "MinFeret": min_feret,
            "FeretAngle": _feret_angle(hull),
            "Major": major,
            "Minor": minor,
            "Angle": angle,
            "Circ": 4.0 * math.pi * area / perimeter**2 if perimeter > 0 else math.nan,
            "AR": major / minor,
            "Round": 4.0 * area / (math.pi * major**2),
            "Solidity": _solidity(region.image, region.coords),
            "X": column + PIXEL_CENTRE,
            "Y": row + PIXEL_CENTRE,
            "BX": float(left),
            "BY": float(top),
            "Width": float(right - left),
            "Height": float(bottom - top),
            "Mean": math.nan if grey is None else float(grey[region.coords[:, 0], region.coords[:, 1]].mean()),
            "ECD": equivalent_circular_diameter(area),
        }
        for name, value in measured.items():
            values[name].append(value)

    count = len(regions)
    scale = math.nan if pixel_size_nm is None else pixel_size_nm
    columns: dict[str, np.ndarray] = {}
    for quantity in _ORDER:
        if quantity == "label":
            columns["label"] = np.asarray(values["label"], dtype=np.int64)
        elif quantity == "Area":
            area_px = np.asarray(values["Area"], dtype=np.float64)
            columns["Area_nm2"] = np.round(area_px * scale**2, DECIMALS["nm"])
            columns["Area_px2"] = np.round(area_px, DECIMALS["px"])
        elif quantity in LENGTH_QUANTITIES:
            length_px = np.asarray(values[quantity], dtype=np.float64)
            columns[f"{quantity}_nm"] = np.round(length_px * scale, DECIMALS["nm"])
            columns[f"{quantity}_px"] = np.round(length_px, DECIMALS["px"])
        elif quantity in _RATIOS:
            columns[quantity] = np.round(np.asarray(values[quantity], dtype=np.float64), DECIMALS["ratio"])
        elif quantity in _ANGLES:
            columns[quantity] = np.round(np.asarray(values[quantity], dtype=np.float64), DECIMALS["angle"])
        elif quantity == "Mean":
            columns["Mean"] = np.round(np.asarray(values["Mean"], dtype=np.float64), DECIMALS["grey"])
        elif quantity == "touches_edge":
            columns["touches_edge"] = _edge_flags(labels, columns["label"], excluded_rows_from)
        elif quantity == "pixel_size_nm":
            columns["pixel_size_nm"] = np.full(count, scale, dtype=np.float64)
        elif quantity == "pixel_size_source":
            columns["pixel_size_source"] = np.full(count, pixel_size.source, dtype=object)
    return columns


def _cell(value: object) -> object:
    """A table value as a CSV/JSON cell: Python scalars, NaN as an empty cell."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


def table_rows(columns: Mapping[str, np.ndarray]) -> list[dict[str, object]]:
    """A table of columns as one dict per row (Python scalars; NaN, an unknown value, as an empty cell).

    Raises:
        ValueError: if the columns differ in length.
    """
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns must all have one length, got {lengths}.")
    count = next(iter(lengths.values()), 0)
    return [{name: _cell(values[index]) for name, values in columns.items()} for index in range(count)]
