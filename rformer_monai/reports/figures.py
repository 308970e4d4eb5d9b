"""Figures of a particle analysis: particle outlines over the micrograph, size distributions.

Every figure is a ``matplotlib.figure.Figure`` drawn by the Agg renderer and saved without
pyplot, so no global figure state or backend setting leaks into the caller. Files are written
atomically (temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from skimage.measure import regionprops
from skimage.segmentation import find_boundaries

from rformer_monai.files import write_atomic
from rformer_monai.particles.measurement import size_statistics

__all__ = [
    "adjacent_label_pairs",
    "colour_labels",
    "overlay_figure",
    "plot_overlay",
    "plot_size_distribution",
    "save_figure",
    "save_prediction_overlay",
    "scale_bar_length",
    "size_distribution_figure",
]

logger = logging.getLogger(__name__)

DPI = 100
"""Dots per inch of saved figures; the overlay maps one image pixel to one figure pixel."""
MAX_OVERLAY_SIDE_PX = 2048
"""Overlays of larger images are scaled down so that their longer side has this many pixels."""
HISTOGRAM_FIGURE_SIZE_INCHES = (6.0, 4.0)
HISTOGRAM_BINS = "auto"
"""numpy's bin rule (max of Sturges and Freedman-Diaconis): adapts to one image and to a pooled run."""

GREY_IN_TAB10 = 7
OUTLINE_COLOURS = np.array([colour for index, colour in enumerate(colormaps["tab10"].colors) if index != GREY_IN_TAB10])
"""RGB colours cycled over the labels, so that touching particles differ in colour: matplotlib's tab10 without its
grey (tab20's pale half and grey vanished on bright particles)."""
SCALE_BAR_FRACTION = 0.2
"""The scale bar is the round length nearest (in ratio) to this fraction of the image width."""
ROUND_MANTISSAS = (1.0, 2.0, 5.0)
"""Scale bar lengths are one of these times a power of ten."""
SCALE_BAR_MARGIN_FRACTION = 0.03
"""Distance of the scale bar from the left and bottom image borders, as a fraction of the width."""
SCALE_BAR_HEIGHT_FRACTION = 0.012
"""Thickness of the scale bar as a fraction of the image height."""
SCALE_BAR_FONT_SIZE = 12
TEXT_OUTLINE_WIDTH = 2.0
NM_PER_UM = 1000.0

PSD_DPI = 300
"""Dots per inch of the size-distribution figures (print quality; the run's figure is also saved as SVG)."""
NEIGHBOUR_DISTANCE_PX = 2
"""Particles closer than this (separated by a one-pixel line) are neighbours and get different colours."""
EDGE_RGB = (1.0, 1.0, 1.0)
EDGE_WASH_ALPHA = 0.35
"""Particles touching the border (left out of the size statistics) are outlined in white over a white wash."""
MAX_NUMBERED_PARTICLES = 3000
"""Above this many particles the overlay leaves out the label numbers (they would cover the image)."""
LABEL_FONT_SIZE = 6
SCALE_BOX_RGBA = (0.0, 0.0, 0.0, 0.6)
"""The scale bar's backing box: translucent black."""
SCALE_BOX_PADDING_FRACTION = 0.5
"""Padding of the backing box around the bar and its text, as a fraction of the margin."""
CUMULATIVE_COLOUR = "tab:blue"
PERCENT = 100.0

PERCENTILE_STYLES = {"d10": "--", "d50": "-", "d90": ":"}
"""Line style of each marked percentile of the size distribution."""


# prediction-against-truth overlay colours (RGB in [0, 1]) and their opacity over the grey micrograph
TRUE_POSITIVE_RGB = (0.1, 0.8, 0.1)
FALSE_POSITIVE_RGB = (0.9, 0.1, 0.1)
FALSE_NEGATIVE_RGB = (0.1, 0.3, 1.0)
OVERLAY_ALPHA = 0.45
OVERLAY_DPI = 100


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Save ``figure`` to ``path`` atomically (format from the suffix, e.g. ``.png``).

    Args:
        figure: the figure to save.
        path: the destination; its folder is created when missing.

    Returns:
        The path written.
    """
    image_format = Path(path).suffix.lstrip(".") or "png"
    FigureCanvasAgg(figure)
    return write_atomic(path, lambda temporary: figure.savefig(temporary, format=image_format, dpi=dpi))


def scale_bar_length(width: float) -> float:
    """A round length (1, 2 or 5 times a power of ten) near a fifth of ``width``.

    Args:
        width: the image width, in the unit the bar is labelled in (> 0).

    Returns:
        The bar length in that unit: the round value nearest to ``width / 5`` in ratio.

    Raises:
        ValueError: if ``width`` is not positive.
    """
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}.")
    target = width * SCALE_BAR_FRACTION
    exponent = math.floor(math.log10(target))
    candidates = [
        mantissa * 10.0 ** power for power in (exponent, exponent + 1) for mantissa in ROUND_MANTISSAS
    ]
    return min(candidates, key=lambda length: abs(math.log(length / target)))


def _length_text(length: float, unit: str) -> str:
    if unit == "nm" and length >= NM_PER_UM:
        return f"{length / NM_PER_UM:g} µm"
    return f"{length:g} {unit}"


def _check_image_and_labels(image: np.ndarray | None, labels: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {tuple(labels.shape)}.")
    if image is not None:
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.shape[:2] != labels.shape:
            raise ValueError(
                f"image must be (H, W) or (H, W, C) with (H, W) = labels' {tuple(labels.shape)}, "
                f"got {tuple(image.shape)}."
            )
    return image, labels


def adjacent_label_pairs(labels: np.ndarray, distance_px: int = NEIGHBOUR_DISTANCE_PX) -> np.ndarray:
    """The pairs of particles closer than ``distance_px`` (in the chessboard metric): (P, 2) labels, a < b."""
    labels = np.asarray(labels)
    height, width = labels.shape
    pairs = []
    for d_row in range(0, distance_px + 1):
        for d_column in range(-distance_px, distance_px + 1):
            if (d_row, d_column) <= (0, 0) or d_row >= height or abs(d_column) >= width:
                continue
            first = labels[: height - d_row, max(0, -d_column) : width - max(0, d_column)]
            second = labels[d_row:, max(0, d_column) : width - max(0, -d_column)]
            touching = (first > 0) & (second > 0) & (first != second)
            if touching.any():
                pair = np.stack([first[touching], second[touching]], axis=1)
                pairs.append(np.sort(pair, axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


def colour_labels(labels: np.ndarray, colour_count: int = len(OUTLINE_COLOURS)) -> dict[int, int]:
    """A colour index per particle such that neighbours (:func:`adjacent_label_pairs`) differ.

    Greedy graph colouring, most-connected particles first (Welsh-Powell); a particle with more than
    ``colour_count - 1`` differently coloured neighbours (not seen on micrographs) reuses the least-used colour.

    Returns:
        label -> colour index in ``0 .. colour_count - 1``.
    """
    present = [int(label) for label in np.unique(labels) if label > 0]
    neighbours: dict[int, set[int]] = {label: set() for label in present}
    for first, second in adjacent_label_pairs(labels):
        neighbours[int(first)].add(int(second))
        neighbours[int(second)].add(int(first))
    colours: dict[int, int] = {}
    usage = [0] * colour_count
    for label in sorted(present, key=lambda item: (-len(neighbours[item]), item)):
        taken = {colours[other] for other in neighbours[label] if other in colours}
        free = [index for index in range(colour_count) if index not in taken]
        colour = free[0] if free else min(range(colour_count), key=usage.__getitem__)
        colours[label] = colour
        usage[colour] += 1
    return colours


def _scale_bar_corner(particles: np.ndarray, box_width: float, box_height: float, margin: float) -> tuple[float, float]:
    """Top-left (x, y) of the scale bar box in the image corner holding the fewest particle pixels."""
    height, width = particles.shape
    box_width, box_height = min(box_width, width - 2 * margin), min(box_height, height - 2 * margin)
    candidates = [
        (width - margin - box_width, height - margin - box_height),  # bottom right first
        (margin, height - margin - box_height),
        (width - margin - box_width, margin),
        (margin, margin),
    ]

    def covered(corner: tuple[float, float]) -> int:
        left, top = int(max(corner[0], 0)), int(max(corner[1], 0))
        return int(particles[top : top + int(math.ceil(box_height)), left : left + int(math.ceil(box_width))].sum())

    return min(candidates, key=covered)


def overlay_figure(
    image: np.ndarray | None,
    labels: np.ndarray,
    pixel_size_nm: float | None,
    edge_labels: np.ndarray | None = None,
) -> Figure:
    """Particle outlines over the micrograph, numbered by label, with a scale bar.

    Neighbouring particles get different colours (:func:`colour_labels`); particles touching the border
    (``edge_labels``) are outlined in white over a white wash; each particle carries its ``label`` (the row of
    the particle table) up to :data:`MAX_NUMBERED_PARTICLES`. The scale bar sits on a translucent box in the
    corner with the fewest particle pixels.

    Args:
        image: (H, W) grey or (H, W, C) colour micrograph, or None to draw on the particle mask.
        labels: (H, W) instance labels, 0 background.
        pixel_size_nm: pixel size in nm; None labels the scale bar in pixels.
        edge_labels: labels of the particles touching the border, or None (none marked).

    Returns:
        The figure (one image pixel per figure pixel up to ``MAX_OVERLAY_SIDE_PX``).
    """
    image, labels = _check_image_and_labels(image, labels)
    height, width = labels.shape
    if image is None:
        image = (labels > 0).astype(np.float32)

    scale = min(1.0, MAX_OVERLAY_SIDE_PX / max(height, width, 1))
    figure = Figure(figsize=(max(width * scale, 1) / DPI, max(height * scale, 1) / DPI), dpi=DPI)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_axis_off()
    axes.imshow(image, cmap="gray", interpolation="nearest")

    colours = colour_labels(labels)
    lookup = np.zeros((int(labels.max(initial=0)) + 1, 3), dtype=np.float32)
    for label, colour in colours.items():
        lookup[label] = OUTLINE_COLOURS[colour]
    on_edge = np.zeros(len(lookup), dtype=bool)
    if edge_labels is not None and len(edge_labels):
        edge_labels = np.asarray(edge_labels, dtype=np.int64)
        on_edge[edge_labels[(edge_labels > 0) & (edge_labels < len(lookup))]] = True
        lookup[on_edge] = EDGE_RGB
    outline = find_boundaries(labels, mode="inner") & (labels > 0)
    overlay = np.zeros((height, width, 4), dtype=np.float32)
    wash = on_edge[labels] & ~outline
    overlay[wash, :3] = EDGE_RGB
    overlay[wash, 3] = EDGE_WASH_ALPHA
    overlay[outline, :3] = lookup[labels[outline]]
    overlay[outline, 3] = 1.0
    axes.imshow(overlay, interpolation="nearest")

    regions = regionprops(labels)
    if len(regions) <= MAX_NUMBERED_PARTICLES:
        for region in regions:
            row, column = region.centroid
            axes.text(
                column, row, str(region.label), color="white", fontsize=LABEL_FONT_SIZE, ha="center", va="center",
                path_effects=[patheffects.withStroke(linewidth=TEXT_OUTLINE_WIDTH, foreground="black")],
            )

    unit = "px" if pixel_size_nm is None else "nm"
    pixel_length = 1.0 if pixel_size_nm is None else float(pixel_size_nm)
    bar_length = scale_bar_length(width * pixel_length)
    bar_px = bar_length / pixel_length
    margin = SCALE_BAR_MARGIN_FRACTION * width
    bar_height = max(SCALE_BAR_HEIGHT_FRACTION * height, 1.0)
    text_height = SCALE_BAR_FONT_SIZE * 1.4 / scale  # points ~ figure pixels at 100 dpi / 72 pt, with leading
    padding = SCALE_BOX_PADDING_FRACTION * margin
    box_width, box_height = bar_px + 2 * padding, bar_height + text_height + 2 * padding
    box_left, box_top = _scale_bar_corner(labels > 0, box_width, box_height, margin)
    axes.add_patch(Rectangle((box_left, box_top), box_width, box_height, facecolor=SCALE_BOX_RGBA, edgecolor="none"))
    bar_left, bar_top = box_left + padding, box_top + box_height - padding - bar_height
    axes.add_patch(Rectangle((bar_left, bar_top), bar_px, bar_height, facecolor="white", edgecolor="black"))
    axes.text(
        bar_left + bar_px / 2,
        bar_top - bar_height / 2,
        _length_text(bar_length, unit),
        color="white",
        fontsize=SCALE_BAR_FONT_SIZE,
        ha="center",
        va="bottom",
        path_effects=[patheffects.withStroke(linewidth=TEXT_OUTLINE_WIDTH, foreground="black")],
    )
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)
    return figure


def plot_overlay(
    path: str | os.PathLike,
    image: np.ndarray | None,
    labels: np.ndarray,
    pixel_size_nm: float | None,
    edge_labels: np.ndarray | None = None,
) -> Path:
    """Save particle outlines over the micrograph, with a scale bar, to ``path``.

    Args:
        path: the image file to write (``.png``).
        image: (H, W) grey or (H, W, C) colour micrograph, or None to draw on the particle mask.
        labels: (H, W) instance labels, 0 background.
        pixel_size_nm: pixel size in nm; None labels the scale bar in pixels.
        edge_labels: labels of the particles touching the border (marked), or None.

    Returns:
        The path written.
    """
    return save_figure(overlay_figure(image, labels, pixel_size_nm, edge_labels), path)


def size_distribution_figure(ecd: np.ndarray, unit: str, title: str | None = None) -> Figure:
    """Histogram of equivalent circular diameters with its cumulative curve and d10, d50 and d90 marked.

    Args:
        ecd: 1-D diameters (one image's or a pooled run's).
        unit: length unit of ``ecd`` (``"nm"`` or ``"px"``), for the axis label.
        title: optional title; the particle count is appended.

    Returns:
        The figure.
    """
    ecd = np.asarray(ecd, dtype=np.float64).ravel()
    statistics = size_statistics(ecd)
    figure = Figure(figsize=HISTOGRAM_FIGURE_SIZE_INCHES, dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    if ecd.size:
        axes.hist(ecd, bins=HISTOGRAM_BINS, color="0.6", edgecolor="0.3")
        for name, style in PERCENTILE_STYLES.items():
            axes.axvline(
                statistics[name], color="black", linestyle=style, label=f"{name} = {statistics[name]:.3g} {unit}"
            )
        cumulative = axes.twinx()
        ordered = np.sort(ecd)
        fraction = PERCENT * np.arange(1, ordered.size + 1) / ordered.size
        cumulative.step(ordered, fraction, where="post", color=CUMULATIVE_COLOUR, label="cumulative")
        cumulative.set_ylim(0, PERCENT)
        cumulative.set_ylabel("cumulative number (%)", color=CUMULATIVE_COLOUR)
        cumulative.tick_params(axis="y", colors=CUMULATIVE_COLOUR)
        axes.legend(frameon=False, loc="center right")
    else:
        axes.text(0.5, 0.5, "no particles", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel(f"equivalent circular diameter ({unit})")
    axes.set_ylabel("number of particles")
    count_text = f"n = {statistics['count']}"
    axes.set_title(f"{title} ({count_text})" if title else count_text)
    return figure


def plot_size_distribution(
    path: str | os.PathLike, ecd: np.ndarray, unit: str, title: str | None = None, with_svg: bool = False
) -> Path:
    """Save the ECD histogram with its cumulative curve and d10, d50 and d90 marked to ``path`` (300 dpi).

    Args:
        path: the image file to write (``.png``).
        ecd: 1-D diameters (one image's or a pooled run's).
        unit: length unit of ``ecd`` (``"nm"`` or ``"px"``), for the axis label.
        title: optional title; the particle count is appended.
        with_svg: also save the figure as SVG beside it (same name, ``.svg``).

    Returns:
        The path written.
    """
    figure = size_distribution_figure(ecd, unit, title)
    if with_svg:
        save_figure(figure, Path(path).with_suffix(".svg"))
    return save_figure(figure, path, dpi=PSD_DPI)


def save_prediction_overlay(
    path: str | os.PathLike, image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None = None
) -> Path:
    """Save a PNG of a grey micrograph with its predicted mask coloured against the truth:
    green = particle found, red = false particle, blue = missed particle (prediction alone: green)."""
    grey = (image - image.min()) / max(float(np.ptp(image)), np.finfo(np.float32).eps)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    truth = prediction if truth is None else truth
    for region, colour in (
        (prediction & truth, TRUE_POSITIVE_RGB),
        (prediction & ~truth, FALSE_POSITIVE_RGB),
        (~prediction & truth, FALSE_NEGATIVE_RGB),
    ):
        rgb[region] = (1 - OVERLAY_ALPHA) * rgb[region] + OVERLAY_ALPHA * np.asarray(colour)
    height, width = grey.shape
    figure = Figure(figsize=(width / OVERLAY_DPI, height / OVERLAY_DPI), dpi=OVERLAY_DPI)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(rgb, interpolation="nearest")
    axes.set_axis_off()
    return save_figure(figure, path, dpi=OVERLAY_DPI)
