"""The bundle's inference of one micrograph of any size (``configs/inference.json``): every output, computed in
blocks, with memory bounded by the block sizes, not the image.

:func:`analyse_micrograph` writes, for one micrograph ``<stem>`` (the files of
:mod:`rformer_monai.reports.tables`): ``<stem>_mask.tif``, ``<stem>_labels.tif``, ``<stem>_particles.csv``,
``<stem>_rois.zip``, ``<stem>_overlay.png``, ``<stem>_psd.png`` and, last, ``<stem>_image.json`` (and
``<stem>_prob.tif`` on request):

1. the image is prepared as the bundle's preprocessing would prepare it whole (data bar, contrast, background,
   normalisation: :mod:`rformer_monai.inference.preparation`);
2. the network runs block by block (:mod:`rformer_monai.inference.blocks`: the same sliding windows as on the
   whole image); the mask is streamed to a tiled TIFF, the probability and separation outputs to raw scratch
   files in the output folder, and the trust check (:mod:`rformer_monai.trust`) is tallied on the way;
3. the particle step runs in its own blocks with particles stitched across seams
   (:mod:`rformer_monai.inference.particle_blocks`): one label per particle, measured once;
4. labels, table, ROIs, overlay (drawn on the image downsampled by a whole factor when a side exceeds
   :data:`OVERLAY_SOURCE_SIDE_PX`), size plot and record are written.

On an image that fits in memory the outputs equal those of the whole image analysed at once (tested in
``tests/inference/test_streaming.py``).
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
from tqdm import tqdm

from rformer_monai.files import (
    MASK_SUFFIX,
    PROBABILITY_SUFFIX,
    TEMPORARY_SUFFIX,
    calibration_options,
    output_stem,
    write_tiff_atomic,
)
from rformer_monai.inference.blocks import (
    DEFAULT_BLOCK_SIZE,
    OUTPUT_TILE,
    _atomic_output,
    _check_inferer,
    _mask_strips,
    _network_device,
    _tiles,
    data_bar_rows,
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
from rformer_monai.inference.preparation import prepare_micrograph
from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD
from rformer_monai.particles.imagej import PixelSize
from rformer_monai.particles.separation import DEFAULT_PARTICLE_THRESHOLD, DEFAULT_VALLEY_GAIN, separation_map
from rformer_monai.reports.figures import plot_overlay
from rformer_monai.reports.roi import ROIS_SUFFIX, write_roi_zip
from rformer_monai.reports.summary import WARNING_COLUMN
from rformer_monai.reports.tables import (
    LABELS_SUFFIX,
    OVERLAY_SUFFIX,
    PARTICLES_SUFFIX,
    UINT16_MAX_LABEL,
    calibration_warnings,
    image_record,
    write_image_summary,
    write_particle_csv,
)
from rformer_monai.transforms.contrast import CONTRAST_KEY, CONTRAST_SCORE_KEY, DEFAULT_CONTRAST
from rformer_monai.transforms.dictionary import SEPARATION_CHANNELS
from rformer_monai.transforms.io import MicrographSource, check_micrograph_file, open_micrograph, pixel_size_from_meta
from rformer_monai.transforms.pipelines import DEFAULT_INTENSITY
from rformer_monai.trust import TrustTally, trust_warning

logger = logging.getLogger(__name__)

OVERLAY_SOURCE_SIDE_PX = 4096
"""Longest side of the image the overlay is drawn from; larger images are downsampled by a whole factor."""
STRIP_ROWS = OUTPUT_TILE[0]
"""Rows read at a time when a scratch plane is streamed to a TIFF or downsampled."""
IN_MEMORY_IMAGE_PIXELS = 1 << 26
"""Largest output image (mask, labels, probability) gathered and written whole, as an ImageJ TIFF calibrated in nm
(the whole-image analysis's file); larger ones are streamed to a tiled TIFF with the pixel size as resolution tags
in centimetres (ImageJ's TIFF reader takes no tiles)."""


def _plane_strips(plane: RawPlane, dtype: np.dtype) -> Iterator[np.ndarray]:
    height = plane.shape[-2]
    for start in range(0, height, STRIP_ROWS):
        yield plane.read(slice(start, min(start + STRIP_ROWS, height)), slice(None)).astype(dtype, copy=False)


def write_image_strips(
    path: Path, strips: Iterator[np.ndarray], shape: tuple[int, int], dtype: np.dtype, pixel_size_nm: float | None
) -> Path:
    """Write an (H, W) image given as strips of rows, atomically: whole up to :data:`IN_MEMORY_IMAGE_PIXELS`
    (:func:`~rformer_monai.files.write_tiff_atomic`), else as a zlib-compressed tiled TIFF; calibrated where the
    pixel size is known."""
    import tifffile

    height, width = shape
    if height * width <= IN_MEMORY_IMAGE_PIXELS:
        return write_tiff_atomic(path, np.concatenate(list(strips)).astype(dtype, copy=False), pixel_size_nm)
    options = calibration_options(pixel_size_nm, imagej=False)  # ImageJ's TIFF format has no tiles
    with _atomic_output(path) as temporary:
        tiles = _tiles(strips, width, OUTPUT_TILE)
        tifffile.imwrite(
            temporary, tiles, shape=(height, width), dtype=dtype, tile=OUTPUT_TILE, compression="zlib", **options
        )
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
    contrast: str = DEFAULT_CONTRAST,
    flatten_background: bool = False,
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
        network: returns logits (B, 1 or more, h, w): the particle mask, then separation outputs.
        inferer: a MONAI ``SlidingWindowInferer``; its window places the blocks.
        block_size: target side of a network block's core in pixels.
        intensity: ``"unit"``, ``"zscore"`` or ``"none"``; must match training.
        contrast: the particles' polarity, ``"bright"``, ``"dark"`` or ``"auto"`` (decided per image).
        flatten_background: subtract the smooth film background before the normalisation.
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
        particles: run the particle step and write its outputs; False writes the mask only.
        device: where the network runs; default the network's device.
        amp: run the network under ``torch.autocast``.
        amp_dtype: autocast dtype; default float16 on CUDA, bfloat16 on CPU.
        scratch_dir: folder of the scratch file a compressed TIFF is decoded to; default ``output_dir``.
        progress: a progress bar over the network's blocks, where there are several.

    Returns:
        The image's ``summary.csv`` row (:func:`~rformer_monai.reports.summary.image_summary`, with the measured
        ECDs under ``ecd_values``); only ``stem`` without particles.

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
            pixel_size = PixelSize(pixel_size_from_meta(source.meta), str(source.meta.get("pixel_size_source", "unknown")))
            bar_rows = data_bar_rows(source, crop_bottom)
            rows = height - bar_rows
            prepared = prepare_micrograph(source, rows, contrast, flatten_background, intensity)
            blocks = plan_blocks((rows, width), block_size, inferer.roi_size, inferer.overlap)
            logger.info("%s: %d x %d pixels, %d data-bar rows, %d blocks", path, height, width, bar_rows, len(blocks))
            keep_maps = particles or save_probability
            probability = plane("probability", (height, width), np.float32) if keep_maps else None
            trust = TrustTally()

            def core_probabilities() -> Iterator[tuple[Any, np.ndarray]]:
                for block in tqdm(blocks, desc=path.name, unit="block", disable=not progress or len(blocks) < 2):
                    image = prepared.block(*block.region)
                    outputs = predict_outputs(image, network, inferer, device, amp=amp, amp_dtype=amp_dtype)
                    if not particles and len(outputs) not in (1, SEPARATION_CHANNELS):
                        raise ValueError(
                            f"the network has {len(outputs)} output channels: binary masks need the particle logits "
                            f"(one channel, or {SEPARATION_CHANNELS} with a separation output after them)."
                        )
                    outputs = outputs[(slice(None), *block.core_in_region)]
                    trust.add(outputs[0])
                    if keep_maps:
                        probability.write(*block.core, outputs[0])
                        if particles and len(outputs) > 1:
                            if "separation" not in planes:
                                plane("separation", (len(outputs) - 1, height, width), np.float32)
                            planes["separation"].write(*block.core, outputs[1:])
                    yield block, outputs[0]

            mask_strips = _mask_strips(core_probabilities(), width, bar_rows, threshold)
            write_image_strips(output_dir / f"{stem}{MASK_SUFFIX}", mask_strips, (height, width), np.uint8, pixel_size.nm)
            if save_probability:
                write_image_strips(
                    output_dir / f"{stem}{PROBABILITY_SUFFIX}", _plane_strips(probability, np.dtype(np.float32)),
                    (height, width), np.dtype(np.float32), pixel_size.nm,
                )
            if not particles:
                return {"stem": stem}
            warning = trust_warning(trust.statistics(prepared.contrast_score))
            if warning:
                logger.warning("%s: %s", path, warning)
            labels = plane("labels", (height, width), LABEL_DTYPE)
            outlines: dict[int, np.ndarray] = {}
            table = stitched_particles(
                probability,
                planes.get("separation"),
                labels,
                rows,
                pixel_size,
                particle_threshold,
                valley_gain=valley_gain,
                separation_map=separation_map,
                block_size=particle_block_size,
                halo=particle_halo_px,
                max_halo=max_particle_halo_px,
                image=source.read,
                outlines=outlines,
                **dict(separation or {}),
            )
            label_dtype = np.dtype(np.uint16 if len(table["label"]) <= UINT16_MAX_LABEL else np.uint32)
            write_image_strips(
                output_dir / f"{stem}{LABELS_SUFFIX}", _plane_strips(labels, label_dtype), (height, width), label_dtype,
                pixel_size.nm,
            )
            write_particle_csv(output_dir / f"{stem}{PARTICLES_SUFFIX}", table)
            write_roi_zip(output_dir / f"{stem}{ROIS_SUFFIX}", outlines)
            edge_labels = table["label"][np.asarray(table["touches_edge"], dtype=bool)]
            plot_overlay(
                output_dir / f"{stem}{OVERLAY_SUFFIX}", *_overlay_inputs(source, labels, rows, pixel_size.nm), edge_labels
            )
            extra = {
                CONTRAST_KEY: prepared.contrast,
                CONTRAST_SCORE_KEY: prepared.contrast_score,
                WARNING_COLUMN: warning,
            }
            record = image_record(
                stem, str(path), (height, width), bar_rows, pixel_size, calibration_warnings(pixel_size, str(path)), extra
            )
            return write_image_summary(output_dir, table, record)
    finally:
        for scratch in planes.values():
            scratch.remove()


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

    def __call__(
        self, path: str | os.PathLike, output_dir: str | os.PathLike | None = None, **settings: Any
    ) -> dict[str, Any]:
        """Analyse ``path`` into ``output_dir`` (default the bound one), with ``settings`` replacing bound ones."""
        output_dir = self.output_dir if output_dir is None else output_dir
        return analyse_micrograph(path, output_dir, self.network, self.inferer, **{**self.settings, **settings})
