"""The streamed inference for micrographs of any size (``configs/inference_large.json``): an image's outputs,
computed in blocks. Bright particles only; no contrast decision, background flattening, trust check, ImageJ
columns, ROIs or image record, which the bundle's whole-image ``inference.json`` gives.

:func:`analyse_micrograph` writes, for one micrograph ``<stem>``:
``<stem>_mask.tif``, ``<stem>_labels.tif``, ``<stem>_particles.csv``, ``<stem>_overlay.png``, ``<stem>_psd.png``
(and ``<stem>_prob.tif`` on request), with memory bounded by the block sizes, not the image:

1. the network runs block by block (:mod:`rformer_monai.inference.blocks`: the same sliding windows as on the
   whole image); the mask is streamed to a tiled TIFF, the probability and separation outputs to raw scratch
   files in the output folder;
2. the particle step runs in its own blocks with particles stitched across seams
   (:mod:`rformer_monai.inference.particle_blocks`): one label per particle, measured once;
3. labels are streamed to a tiled TIFF, the table and size plot written, and the overlay drawn on the image
   (downsampled by a whole factor when a side exceeds :data:`OVERLAY_SOURCE_SIDE_PX`).

:class:`StreamingEvaluator` runs it for every input of the bundle's datalist, with the bundle's failure log and
handlers; :class:`RunSummaryHandler` writes the run's summary from the images' rows.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from torch import nn

from rformer_monai.files import MASK_SUFFIX, PROBABILITY_SUFFIX, TEMPORARY_SUFFIX, output_stem
from rformer_monai.inference.blocks import (
    DEFAULT_BLOCK_SIZE,
    OUTPUT_TILE,
    _atomic_output,
    _check_inferer,
    _mask_strips,
    _network_device,
    _tiles,
    data_bar_rows,
    intensity_statistics,
    normalise_block,
    plan_blocks,
    predict_outputs,
)
from rformer_monai.inference.particle_blocks import (
    DEFAULT_MAX_PARTICLE_HALO_PX,
    DEFAULT_PARTICLE_BLOCK_SIZE,
    DEFAULT_PARTICLE_HALO_PX,
    LABEL_DTYPE,
    RawPlane,
    stitched_particles,
)
from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD
from rformer_monai.particles.measurement import summarize_particles
from rformer_monai.particles.separation import DEFAULT_PARTICLE_THRESHOLD, DEFAULT_VALLEY_GAIN, separation_map
from rformer_monai.reports.figures import plot_overlay, plot_size_distribution
from rformer_monai.reports.tables import (
    ECD_VALUES_KEY,
    LABELS_SUFFIX,
    OVERLAY_SUFFIX,
    PARTICLES_SUFFIX,
    PSD_SUFFIX,
    UINT16_MAX_LABEL,
    write_particle_csv,
)
from rformer_monai.transforms.dictionary import SEPARATION_CHANNELS
from rformer_monai.transforms.io import (
    MicrographSource,
    check_micrograph_file,
    open_micrograph,
    pixel_size_from_meta,
)
from rformer_monai.transforms.pipelines import DEFAULT_INTENSITY

logger = logging.getLogger(__name__)

OVERLAY_SOURCE_SIDE_PX = 4096
"""Longest side of the image the overlay is drawn from; larger images are downsampled by a whole factor."""
STRIP_ROWS = OUTPUT_TILE[0]
"""Rows read at a time when a scratch plane is streamed to a TIFF or downsampled."""


def _plane_strips(plane: RawPlane, dtype: np.dtype) -> Iterator[np.ndarray]:
    height = plane.shape[-2]
    for start in range(0, height, STRIP_ROWS):
        yield plane.read(slice(start, min(start + STRIP_ROWS, height)), slice(None)).astype(dtype, copy=False)


def _write_plane(plane: RawPlane, path: Path, dtype: np.dtype) -> Path:
    """Stream an (H, W) scratch plane to a zlib-compressed tiled TIFF written atomically."""
    import tifffile

    height, width = plane.shape
    with _atomic_output(path) as temporary:
        tiles = _tiles(_plane_strips(plane, dtype), width, OUTPUT_TILE)
        tifffile.imwrite(temporary, tiles, shape=(height, width), dtype=dtype, tile=OUTPUT_TILE, compression="zlib")
    return path


def _downsampled(read: Callable[[slice, slice], np.ndarray], rows: int, width: int, factor: int) -> np.ndarray:
    """Every ``factor``-th row and column of the first ``rows`` rows, read a strip at a time."""
    strip = max(factor, STRIP_ROWS // factor * factor)
    return np.concatenate(
        [
            read(slice(start, min(start + strip, rows)), slice(None))[::factor, ::factor]
            for start in range(0, rows, strip)
        ]
    )


def _overlay_inputs(source: MicrographSource, labels: RawPlane, rows: int, pixel_size_nm: float | None):
    """The image, labels and pixel size the overlay is drawn from: the sample whole, or downsampled."""
    width = labels.shape[1]
    factor = max(1, math.ceil(max(rows, width) / OVERLAY_SOURCE_SIDE_PX))
    if factor == 1:
        return source.read(slice(0, rows), slice(None)), labels.read(slice(0, rows), slice(None)), pixel_size_nm
    logger.info("%s: overlay drawn on the image downsampled %d times", source.path, factor)
    image = _downsampled(source.read, rows, width, factor)
    sample_labels = _downsampled(labels.read, rows, width, factor)
    return image, sample_labels, None if pixel_size_nm is None else pixel_size_nm * factor


def analyse_micrograph(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: SlidingWindowInferer,
    block_size: int = DEFAULT_BLOCK_SIZE,
    intensity: str = DEFAULT_INTENSITY,
    crop_bottom: int | None = None,
    pixel_size_nm: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    particle_threshold: float = DEFAULT_PARTICLE_THRESHOLD,
    valley_gain: float = DEFAULT_VALLEY_GAIN,
    separation: Mapping[str, Any] | None = None,
    separation_map: Callable[[np.ndarray], np.ndarray] = separation_map,
    particle_block_size: int = DEFAULT_PARTICLE_BLOCK_SIZE,
    particle_halo_px: int = DEFAULT_PARTICLE_HALO_PX,
    max_particle_halo_px: int = DEFAULT_MAX_PARTICLE_HALO_PX,
    save_probability: bool = False,
    particles: bool = True,
    device: torch.device | str | None = None,
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
    scratch_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Segment one micrograph of any size and analyse its particles; write all of its outputs (module docstring).

    Args:
        path: the micrograph.
        output_dir: folder of the outputs (and of the scratch files, deleted at the end).
        network: returns logits (B, 1 or 2, h, w): the particle mask, then a separation output.
        inferer: a MONAI ``SlidingWindowInferer``; its window places the blocks.
        block_size: target side of a network block's core in pixels.
        intensity: ``"unit"``, ``"zscore"`` or ``"none"``; must match training.
        crop_bottom: data-bar rows; ``None`` detects the bar.
        pixel_size_nm: overrides the file's pixel size.
        threshold: probability above which a pixel is particle in the mask.
        particle_threshold: the particle step's threshold.
        valley_gain: see :func:`~rformer_monai.particles.deepen_valleys`.
        separation: keyword arguments of :func:`~rformer_monai.particles.separate_particles`.
        separation_map: turns the separation outputs (C, h, w) into the (h, w) map the watershed cuts along.
        particle_block_size: target side of a particle block's core in pixels.
        particle_halo_px: first context around a particle block's core.
        max_particle_halo_px: largest context grown for clusters of particles.
        save_probability: also write ``<stem>_prob.tif`` (float32).
        particles: run the particle step (labels, table, overlay, size plot); False writes the mask only.
        device: where the network runs; default the network's device.
        amp: run the network under ``torch.autocast``.
        amp_dtype: autocast dtype; default float16 on CUDA, bfloat16 on CPU.
        scratch_dir: folder of the scratch file a compressed TIFF is decoded to; default ``output_dir``.
        progress: a progress bar over the network's blocks.

    Returns:
        The image's summary row, as :func:`~rformer_monai.reports.analyse_mask` returns it (``stem`` and the
        columns of ``summary.csv``, and the measured ECDs under ``ecd_values``); only ``stem`` without particles.

    Raises:
        MicrographReadError: the input cannot be read.
        ValueError: a bad argument, named in the message.
    """
    _check_inferer(inferer)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    path, output_dir = check_micrograph_file(path), Path(output_dir)
    stem = output_stem(path)
    output_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(network, nn.Module):
        network.eval()
    device = _network_device(network) if device is None else torch.device(device)
    planes: dict[str, RawPlane] = {}

    def plane(name: str, shape, dtype) -> RawPlane:
        # named like write_atomic's temporary files of the mask, so that a rerun removes those of a killed run
        scratch = output_dir / f".{stem}{MASK_SUFFIX}.{name}.{os.getpid()}{TEMPORARY_SUFFIX}"
        planes[name] = RawPlane(scratch, shape, dtype)
        return planes[name]

    try:
        with open_micrograph(path, output_dir if scratch_dir is None else scratch_dir, pixel_size_nm) as source:
            height, width = source.shape
            pixel_size_nm = pixel_size_from_meta(source.meta)
            bar_rows = data_bar_rows(source, crop_bottom)
            rows = height - bar_rows
            statistics = intensity_statistics(source, rows)
            blocks = plan_blocks((rows, width), block_size, inferer.roi_size, inferer.overlap)
            logger.info("%s: %d x %d pixels, %d data-bar rows, %d blocks", path, height, width, bar_rows, len(blocks))
            keep_maps = particles or save_probability
            probability = plane("probability", (height, width), np.float32) if keep_maps else None

            def core_probabilities() -> Iterator[tuple[Any, np.ndarray]]:
                for block in blocks:
                    image = normalise_block(source.read(*block.region), intensity, statistics)
                    outputs = predict_outputs(image, network, inferer, device, amp=amp, amp_dtype=amp_dtype)
                    if not particles and len(outputs) not in (1, SEPARATION_CHANNELS):
                        raise ValueError(
                            f"the network has {len(outputs)} output channels: binary masks need the particle logits "
                            f"(one channel, or {SEPARATION_CHANNELS} with a separation output after them)."
                        )
                    outputs = outputs[(slice(None), *block.core_in_region)]
                    if keep_maps:
                        probability.write(*block.core, outputs[0])
                        if particles and len(outputs) > 1:
                            if "separation" not in planes:
                                plane("separation", (len(outputs) - 1, height, width), np.float32)
                            planes["separation"].write(*block.core, outputs[1:])
                    yield block, outputs[0]

            tiles = _tiles(_mask_strips(core_probabilities(), width, bar_rows, threshold), width, OUTPUT_TILE)
            import tifffile

            with _atomic_output(output_dir / f"{stem}{MASK_SUFFIX}") as temporary:
                tifffile.imwrite(
                    temporary, tiles, shape=(height, width), dtype=np.uint8, tile=OUTPUT_TILE, compression="zlib"
                )
            if save_probability:
                _write_plane(probability, output_dir / f"{stem}{PROBABILITY_SUFFIX}", np.dtype(np.float32))
            if not particles:
                return {"stem": stem}
            labels = plane("labels", (height, width), LABEL_DTYPE)
            columns = stitched_particles(
                probability,
                planes.get("separation"),
                labels,
                rows,
                pixel_size_nm,
                particle_threshold,
                valley_gain=valley_gain,
                separation_map=separation_map,
                block_size=particle_block_size,
                halo=particle_halo_px,
                max_halo=max_particle_halo_px,
                **dict(separation or {}),
            )
            count = len(columns["label"])
            _write_plane(
                labels,
                output_dir / f"{stem}{LABELS_SUFFIX}",
                np.dtype(np.uint16 if count <= UINT16_MAX_LABEL else np.uint32),
            )
            write_particle_csv(output_dir / f"{stem}{PARTICLES_SUFFIX}", columns)
            unit_length = 1.0 if pixel_size_nm is None else float(pixel_size_nm)
            summary = summarize_particles(columns, rows * width * unit_length**2)
            unit = summary["unit"]
            measured_ecd = np.asarray(columns[f"ecd_{unit}"])[~np.asarray(columns["touches_edge"], dtype=bool)]
            plot_overlay(output_dir / f"{stem}{OVERLAY_SUFFIX}", *_overlay_inputs(source, labels, rows, pixel_size_nm))
            plot_size_distribution(output_dir / f"{stem}{PSD_SUFFIX}", measured_ecd, unit, title=stem)
    finally:
        for scratch in planes.values():
            scratch.remove()
    logger.info(
        "%s: %d particles (%d off the border), median ECD %.4g %s",
        stem,
        summary["particle_count"],
        summary["measured_count"],
        summary["ecd_median"],
        unit,
    )
    return {"stem": stem, **summary, ECD_VALUES_KEY: measured_ecd}


class MicrographAnalysis:
    """:func:`analyse_micrograph` with its settings bound: ``analysis(path)`` returns the image's summary row.

    Args:
        output_dir: folder of the outputs.
        network, inferer: see :func:`analyse_micrograph`.
        **settings: the other keyword arguments of :func:`analyse_micrograph`.
    """

    def __init__(
        self, output_dir: str | os.PathLike, network: nn.Module, inferer: SlidingWindowInferer, **settings: Any
    ) -> None:
        _check_inferer(inferer)
        self.output_dir = Path(output_dir)
        self.network = network
        self.inferer = inferer
        self.settings = settings

    def __call__(self, path: str | os.PathLike) -> dict[str, Any]:
        return analyse_micrograph(path, self.output_dir, self.network, self.inferer, **self.settings)
