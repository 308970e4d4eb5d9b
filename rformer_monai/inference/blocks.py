"""Segmenting micrographs of any size in overlapping blocks streamed from and to disk.

A block is a *core* (the pixels it writes) plus a *halo* of context on every side. MONAI's
``SlidingWindowInferer`` runs on core + halo and only the core is kept. Two rules make the result the same as
sliding-window inference on the whole image:

- block borders lie on the whole image's window grid: block origins are multiples of the window stride
  (``int(roi_size * (1 - overlap))``, MONAI's rule) and the halo is the window size rounded up to a multiple
  of the stride, so every core pixel is covered by exactly the windows that cover it in the whole image, blended
  with the same Gaussian weights;
- every block is normalised with the statistics of the whole image (computed first, exactly, in one streaming
  pass over the file), as the bundle's per-image normalisation does.

What is left are floating-point differences (measured: see ``docs/large_images.md``). Peak memory depends on
the block size, not on the image: a few float32 planes of one block, one strip of uint8 mask rows, and the bottom
30 % of the image's rows while its data bar is detected.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer, SlidingWindowInfererAdapt
from monai.transforms import NormalizeIntensity
from monai.utils import convert_to_tensor, ensure_tuple_rep
from torch import nn
from tqdm import tqdm

from rformer_monai.files import (
    FILE_MODE,
    MASK_FOREGROUND,
    MASK_SUFFIX,
    output_stem,
)
from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD
from rformer_monai.transforms.databar import detect_data_bar
from rformer_monai.transforms.dictionary import SEPARATION_CHANNELS
from rformer_monai.transforms.io import MicrographSource
from rformer_monai.transforms.pipelines import DEFAULT_INTENSITY, INTENSITY_MODES

logger = logging.getLogger(__name__)

SPATIAL_DIMS = 2
DEFAULT_BLOCK_SIZE = 4096
"""Target side of a block's core in pixels: about 1.2 GB peak on CPU, plus the network's activations (see
``docs/large_images.md``)."""
STATISTICS_CHUNK_PIXELS = 1 << 22
"""Pixels read at a time by the statistics pass (32 MB as float64)."""
OUTPUT_TILE = (512, 512)
"""Tile shape of the written mask (zlib-compressed, tiled TIFF)."""
GPU_STITCH_FRACTION = 0.5
"""Stitch on the GPU when one block's stitching planes need at most this fraction of its free memory."""
STITCH_PLANES = 3
"""float32 planes the sliding window keeps per block and output channel: input, output and weight sum."""
FLOAT32_BYTES = 4
CPU_STITCH_BUFFER_STEPS = 4
"""Window rows MONAI buffers on the GPU before writing them to the CPU output, when stitching on the CPU."""


# ------------------------------------------------------------------ block grid
@dataclass(frozen=True)
class Block:
    """One block of the grid: ``core`` (rows, columns) is written, ``region`` (core + halo, clipped to the image)
    is segmented. Both are in image coordinates."""

    core: tuple[slice, slice]
    region: tuple[slice, slice]

    @property
    def core_in_region(self) -> tuple[slice, slice]:
        """The core in the coordinates of the region."""
        return tuple(  # type: ignore[return-value]
            slice(core.start - region.start, core.stop - region.start) for core, region in zip(self.core, self.region)
        )


def window_stride(roi_size: Sequence[int] | int, overlap: Sequence[float] | float) -> tuple[int, ...]:
    """The sliding-window stride per spatial dimension: ``int(roi_size * (1 - overlap))``, at least 1 (MONAI's rule)."""
    roi = ensure_tuple_rep(roi_size, SPATIAL_DIMS)
    overlaps = ensure_tuple_rep(overlap, SPATIAL_DIMS)
    if any(int(side) <= 0 for side in roi):
        raise ValueError(f"roi_size must be positive in every dimension, got {roi_size!r}.")
    if any(not 0.0 <= value < 1.0 for value in overlaps):
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}.")
    return tuple(max(1, int(side * (1.0 - value))) for side, value in zip(roi, overlaps))


def _axis_blocks(extent: int, block_size: int, roi: int, stride: int) -> list[tuple[slice, slice]]:
    """(core, region) slices along one axis; cores are equal multiples of ``stride`` and tile ``[0, extent)``."""
    halo = math.ceil(roi / stride) * stride
    if extent <= block_size + 2 * halo:
        return [(slice(0, extent), slice(0, extent))]
    count = math.ceil(extent / block_size)
    core = math.ceil(math.ceil(extent / count) / stride) * stride
    axis = []
    for start in range(0, extent, core):
        stop = min(start + core, extent)
        axis.append((slice(start, stop), slice(max(0, start - halo), min(extent, stop + halo))))
    return axis


def plan_blocks(
    image_shape: Sequence[int],
    block_size: int,
    roi_size: Sequence[int] | int,
    overlap: Sequence[float] | float,
) -> list[Block]:
    """Tile an image into blocks whose sliding windows are those of the whole image (see the module docstring).

    Along each axis the image is one block when it is at most ``block_size`` plus two halos long; otherwise it
    is cut into ``ceil(extent / block_size)`` equal cores rounded up to a multiple of the window stride. The
    halo is ``roi_size`` rounded up to a multiple of the stride.

    Args:
        image_shape: (H, W) of the image.
        block_size: target side of a block's core, in pixels.
        roi_size: the sliding window's size.
        overlap: the sliding window's overlap.

    Returns:
        The blocks in row-major order of their cores.

    Raises:
        ValueError: when ``block_size`` is not a positive integer or the shape is not two positive sides.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size <= 0:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
    if len(image_shape) != SPATIAL_DIMS or any(int(side) <= 0 for side in image_shape):
        raise ValueError(f"image_shape must be two positive sides (H, W), got {tuple(image_shape)!r}.")
    roi = ensure_tuple_rep(roi_size, SPATIAL_DIMS)
    stride = window_stride(roi, overlap)
    rows, columns = (
        _axis_blocks(int(extent), int(block_size), int(side), step)
        for extent, side, step in zip(image_shape, roi, stride)
    )
    return [
        Block(core=(row_core, column_core), region=(row_region, column_region))
        for (row_core, row_region), (column_core, column_region) in itertools.product(rows, columns)
    ]


# ------------------------------------------------------------------ intensity
@dataclass(frozen=True)
class IntensityStatistics:
    """Whole-image intensity statistics: mean and population standard deviation (as MONAI's
    ``NormalizeIntensity``), minimum and maximum (as ``ScaleIntensity``), over ``pixels`` pixels."""

    mean: float
    std: float
    minimum: float
    maximum: float
    pixels: int


def intensity_statistics(
    source: MicrographSource, rows: int | None = None, chunk_pixels: int = STATISTICS_CHUNK_PIXELS
) -> IntensityStatistics:
    """Exact intensity statistics of the first ``rows`` rows of ``source`` in one streaming pass.

    Chunks of rows are read one at a time and combined with Chan's parallel update in float64, so the result is
    the whole image's statistics (to float64 rounding) at the memory cost of one chunk.

    Args:
        source: the micrograph.
        rows: rows to include (the rows above the data bar); default all.
        chunk_pixels: pixels read at a time.
    """
    height, width = source.shape
    rows = height if rows is None else rows
    if not 0 < rows <= height:
        raise ValueError(f"rows must be in [1, {height}], got {rows}.")
    chunk_rows = max(1, chunk_pixels // width)
    count, mean, m2 = 0, 0.0, 0.0
    minimum, maximum = math.inf, -math.inf
    for start in range(0, rows, chunk_rows):
        chunk = source.read(slice(start, min(start + chunk_rows, rows)), slice(None)).astype(np.float64)
        chunk_count = chunk.size
        chunk_mean = float(chunk.mean())
        chunk_m2 = float(np.square(chunk - chunk_mean).sum())
        delta = chunk_mean - mean
        total = count + chunk_count
        mean += delta * chunk_count / total
        m2 += chunk_m2 + delta * delta * count * chunk_count / total
        count = total
        minimum, maximum = min(minimum, float(chunk.min())), max(maximum, float(chunk.max()))
    return IntensityStatistics(mean=mean, std=math.sqrt(m2 / count), minimum=minimum, maximum=maximum, pixels=count)


def normalise_block(block: np.ndarray, intensity: str, statistics: IntensityStatistics) -> torch.Tensor:
    """Normalise a block with whole-image statistics, as the bundle's per-image ``intensity`` transform would.

    Args:
        block: (h, w) pixels in their stored dtype.
        intensity: ``"zscore"`` (MONAI's ``NormalizeIntensity`` with the image's mean and std), ``"unit"`` (the
            image's minimum and maximum to 0 and 1) or ``"none"``.
        statistics: the whole image's statistics.

    Returns:
        A float32 (h, w) tensor.
    """
    image = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
    if intensity == "zscore":
        normalised = NormalizeIntensity(subtrahend=statistics.mean, divisor=statistics.std)(image)
        return convert_to_tensor(normalised, track_meta=False)
    if intensity == "unit":
        if statistics.maximum == statistics.minimum:
            return torch.zeros_like(image)
        return (image - statistics.minimum) / (statistics.maximum - statistics.minimum)
    if intensity == "none":
        return image
    raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}.")


# ------------------------------------------------------------------ one block
def stitching_options(
    inferer: SlidingWindowInferer, spatial_shape: Sequence[int], device: torch.device, free_bytes: int | None = None
) -> dict:
    """Where MONAI's sliding window stitches a block: keyword arguments for ``inferer(inputs, network, **options)``.

    On CUDA, blocks whose stitching planes fit in ``GPU_STITCH_FRACTION`` of the free GPU memory are stitched on
    the GPU (no options: MONAI's default is the input's device); larger ones on the CPU, with the windows of
    ``CPU_STITCH_BUFFER_STEPS`` window rows buffered on the GPU and written out as slabs of whole rows (MONAI's
    ``device``, ``buffer_steps`` and ``buffer_dim``). An inferer that already names its stitching ``device``, and
    MONAI's ``SlidingWindowInfererAdapt`` (which adapts on its own), are left alone. On CPU there is nothing to
    choose.

    Args:
        inferer: the sliding-window inferer.
        spatial_shape: (h, w) of the block.
        device: where the network runs.
        free_bytes: free GPU memory; default ``torch.cuda.mem_get_info``.
    """
    if device.type != "cuda" or isinstance(inferer, SlidingWindowInfererAdapt) or inferer.device is not None:
        return {}
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    needed = math.prod(int(side) for side in spatial_shape) * STITCH_PLANES * FLOAT32_BYTES
    if needed <= GPU_STITCH_FRACTION * free_bytes:
        return {}
    logger.info(
        "block %s stitched on the CPU (%.1f GB needed, %.1f GB free on the GPU)",
        tuple(spatial_shape), needed / 1e9, free_bytes / 1e9,
    )
    return {"device": torch.device("cpu"), "buffer_steps": CPU_STITCH_BUFFER_STEPS, "buffer_dim": 0}


def predict_probability(
    image: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: SlidingWindowInferer,
    device: torch.device,
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Particle probability of one normalised image or block by sliding-window inference.

    Args:
        image: (h, w) normalised float32 pixels.
        network: returns logits (B, 1, h, w), or (B, 2, h, w) with a separation output, which the
            mask does not use.
        inferer: the sliding-window inferer.
        device: where the network runs (and, when it fits, where the windows are stitched).
        amp: run the network under ``torch.autocast``.
        amp_dtype: autocast dtype; default float16 on CUDA, bfloat16 on CPU.

    Returns:
        float32 (h, w) sigmoid of the stitched logits, on the CPU.

    Raises:
        ValueError: when the network has another number of output channels.
    """
    logits = _block_logits(image, network, inferer, device, amp, amp_dtype)
    if logits.shape[1] not in (1, SEPARATION_CHANNELS):
        raise ValueError(
            f"the network has {logits.shape[1]} output channels: binary masks need the particle logits "
            f"(one channel, or {SEPARATION_CHANNELS} with a separation output after them)."
        )
    return torch.sigmoid(logits[0, 0].float()).cpu().numpy()


def _block_logits(image, network, inferer, device, amp, amp_dtype) -> torch.Tensor:
    inputs = image[None, None].to(device)
    options = stitching_options(inferer, image.shape, device)
    dtype = amp_dtype or (torch.float16 if device.type == "cuda" else torch.bfloat16)
    autocast = torch.autocast(device_type=device.type, dtype=dtype) if amp else nullcontext()
    with torch.inference_mode(), autocast:
        return inferer(inputs, network, **options)


def predict_outputs(
    image: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: SlidingWindowInferer,
    device: torch.device,
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> np.ndarray:
    """The sigmoid of every output channel of one normalised image or block, as the bundle's ``Activationsd``:
    float32 (C, h, w) on the CPU, the particle probability first (see :func:`predict_probability`)."""
    logits = _block_logits(image, network, inferer, device, amp, amp_dtype)
    return torch.sigmoid(logits[0].float()).cpu().numpy()


def _network_device(network: Callable) -> torch.device:
    parameter = next(network.parameters(), None) if isinstance(network, nn.Module) else None
    return torch.device("cpu") if parameter is None else parameter.device


def _check_inferer(inferer) -> None:
    if not isinstance(inferer, SlidingWindowInferer):
        raise ValueError(
            f"inferer must be a monai.inferers.SlidingWindowInferer (its roi_size and overlap place the blocks), "
            f"got {type(inferer).__name__}."
        )


def iter_block_probabilities(
    source: MicrographSource,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: SlidingWindowInferer,
    blocks: Sequence[Block],
    statistics: IntensityStatistics,
    intensity: str = DEFAULT_INTENSITY,
    device: torch.device | str | None = None,
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> Iterator[tuple[Block, np.ndarray]]:
    """Segment ``blocks`` of ``source`` one at a time and yield each block with the probability of its core.

    Args:
        source: the micrograph.
        network: returns logits (B, 1, h, w), or (B, 2, h, w) with a separation output, which the
            mask does not use.
        inferer: the sliding-window inferer the blocks were planned for.
        blocks: from :func:`plan_blocks`.
        statistics: the whole image's intensity statistics (:func:`intensity_statistics`).
        intensity: the normalisation (see :func:`normalise_block`).
        device: where the network runs; default the network's device.
        amp: run the network under ``torch.autocast``.
        amp_dtype: autocast dtype; default float16 on CUDA, bfloat16 on CPU.
        progress: show a progress bar over the blocks.
    """
    _check_inferer(inferer)
    device = _network_device(network) if device is None else torch.device(device)
    for block in tqdm(blocks, desc=source.path.name, unit="block", disable=not progress):
        image = normalise_block(source.read(*block.region), intensity, statistics)
        probability = predict_probability(image, network, inferer, device, amp=amp, amp_dtype=amp_dtype)
        yield block, probability[block.core_in_region]


# ------------------------------------------------------------------ writing
def _mask_strips(
    probabilities: Iterator[tuple[Block, np.ndarray]], width: int, bar_rows: int, threshold: float
) -> Iterator[np.ndarray]:
    """uint8 0/255 mask strips, one per row of blocks, then the data bar's rows as 0."""
    for _, row_blocks in itertools.groupby(probabilities, key=lambda item: item[0].core[0].start):
        strip = None
        for block, probability in row_blocks:
            if strip is None:
                strip = np.zeros((probability.shape[0], width), dtype=np.uint8)
            strip[:, block.core[1]] = (probability > threshold) * np.uint8(MASK_FOREGROUND)
        yield strip
    if bar_rows:
        yield np.zeros((bar_rows, width), dtype=np.uint8)


def _tiles(strips: Iterator[np.ndarray], width: int, tile: tuple[int, int]) -> Iterator[np.ndarray]:
    """Regroup row strips into the tiles of a tiled TIFF, row-major (the last row and column may be partial)."""
    tile_rows, tile_columns = tile
    pending = np.zeros((0, width), dtype=np.uint8)

    def row_of_tiles(rows: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, width, tile_columns):
            yield rows[:, start : start + tile_columns]

    for strip in strips:
        pending = np.concatenate([pending, strip]) if len(pending) else strip
        full = len(pending) // tile_rows * tile_rows
        for start in range(0, full, tile_rows):
            yield from row_of_tiles(pending[start : start + tile_rows])
        pending = pending[full:]
    if len(pending):
        yield from row_of_tiles(pending)


@contextmanager
def _atomic_output(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, renamed to ``path`` when the block exits without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, FILE_MODE & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def data_bar_rows(source: MicrographSource, crop_bottom: int | None = None) -> int:
    """Rows of the instrument data bar at the bottom of ``source``: ``crop_bottom`` when given, else detected.

    Detection is the bundle's :func:`~rformer_monai.transforms.detect_data_bar` on the memory-mapped image: it
    reads and sorts only the bottom ``MAX_BAR_FRACTION`` of the rows, so its result is the bundle's and its memory
    about twice those rows' bytes.
    """
    height = source.shape[0]
    if crop_bottom is None:
        with source.mapped() as image:
            rows = detect_data_bar(image)
    else:
        if isinstance(crop_bottom, bool) or not isinstance(crop_bottom, (int, np.integer)) or crop_bottom < 0:
            raise ValueError(f"crop_bottom must be None (detect) or an integer >= 0, got {crop_bottom!r}.")
        rows = int(crop_bottom)
    if rows >= height:
        raise ValueError(f"{source.path}: cannot crop {rows} data-bar rows from an image of height {height}.")
    return rows


def segment_large_micrograph(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: SlidingWindowInferer,
    block_size: int = DEFAULT_BLOCK_SIZE,
    intensity: str = DEFAULT_INTENSITY,
    crop_bottom: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    device: torch.device | str | None = None,
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
    scratch_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Segment a micrograph of any size into ``output_dir/<stem>_mask.tif`` with memory bounded by the block size:
    :func:`~rformer_monai.inference.analyse_micrograph` without its particle step.

    The result is the bundle's inference (data bar detected and set to 0, per-image normalisation, sliding windows,
    sigmoid, threshold) up to floating-point differences, computed block by block (see the module docstring).
    The mask, uint8 0/255 at the input's full size, is written as a zlib-compressed tiled TIFF to a temporary
    file in ``output_dir`` and renamed when complete.

    Args:
        path: the micrograph (see :func:`~rformer_monai.transforms.open_micrograph` for formats and their cost).
        output_dir: folder of the mask.
        network: returns logits (B, 1, h, w); put in eval mode here.
        inferer: a MONAI ``SlidingWindowInferer`` (the bundle's ``inferer``); its window places the blocks.
        block_size: target side of a block's core in pixels (see :func:`plan_blocks`).
        intensity: ``"unit"``, ``"zscore"`` or ``"none"``; must match training.
        crop_bottom: data-bar rows; ``None`` detects the bar.
        threshold: probability above which a pixel is particle.
        device: where the network runs; default the network's device.
        amp: run the network under ``torch.autocast``.
        amp_dtype: autocast dtype; default float16 on CUDA, bfloat16 on CPU.
        scratch_dir: folder of the scratch file a compressed or colour TIFF is decoded to; default ``output_dir``.
        progress: show a progress bar over the blocks.

    Returns:
        The path of the mask.

    Raises:
        MicrographReadError: the input cannot be read.
        ValueError: a bad argument, named in the message.
    """
    from rformer_monai.inference.streaming import analyse_micrograph

    if intensity not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}.")
    analyse_micrograph(
        path, output_dir, network, inferer, block_size=block_size, intensity=intensity, crop_bottom=crop_bottom,
        threshold=threshold, particles=False, device=device, amp=amp, amp_dtype=amp_dtype, scratch_dir=scratch_dir,
        progress=progress,
    )
    return Path(output_dir) / f"{output_stem(path)}{MASK_SUFFIX}"
