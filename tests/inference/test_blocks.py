"""Block streaming: the grid, the statistics, agreement with the bundle's whole-image inference, the output contract."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from inference_helpers import (
    BUNDLE_ROI,
    OVERLAP,
    context_network,
    particles_image,
    whole_image_probability,
)
from monai.data.utils import dense_patch_slices
from monai.inferers import (
    SimpleInferer,
    SlidingWindowInferer,
    SlidingWindowInfererAdapt,
)
from monai.inferers.utils import _get_scan_interval
from PIL import Image
from tiny_bundle_network import tiny_network
from torch import nn

from rformer_monai.inference import blocks as blocks_module
from rformer_monai.inference import (
    data_bar_rows,
    intensity_statistics,
    iter_block_probabilities,
    normalise_block,
    plan_blocks,
    predict_probability,
    segment_large_micrograph,
    stitching_options,
    window_stride,
)
from rformer_monai.transforms import (
    MicrographReadError,
    detect_data_bar,
    intensity_transform,
    open_micrograph,
)
from rformer_monai.transforms.pipelines import DEFAULT_INTENSITY

PROBABILITY_TOLERANCE = 1e-5
"""Largest probability difference allowed between block streaming and whole-image inference (float32 rounding:
measured 1.2e-7)."""
THRESHOLD = 0.5
BAR_ROWS = 24


def block_probability(path: Path, network: nn.Module, inferer: SlidingWindowInferer, block_size: int, **kwargs):
    """The probability map assembled from :func:`iter_block_probabilities`, data-bar rows 0."""
    intensity = kwargs.pop("intensity", DEFAULT_INTENSITY)
    with open_micrograph(path) as source:
        bar_rows = data_bar_rows(source)
        statistics = intensity_statistics(source, source.shape[0] - bar_rows)
        region = (source.shape[0] - bar_rows, source.shape[1])
        blocks = plan_blocks(region, block_size, inferer.roi_size, inferer.overlap)
        probability = np.zeros(source.shape, dtype=np.float32)
        for block, core in iter_block_probabilities(source, network, inferer, blocks, statistics, intensity, **kwargs):
            probability[block.core] = core
    return probability, blocks


def assert_matches_whole_image(block: np.ndarray, whole: np.ndarray) -> None:
    """Probabilities within the tolerance; masks differ only where the probability is that close to the threshold."""
    assert np.abs(block - whole).max() <= PROBABILITY_TOLERANCE
    undecided = np.abs(whole - THRESHOLD) <= PROBABILITY_TOLERANCE
    differing = (block > THRESHOLD) != (whole > THRESHOLD)
    assert not np.any(differing & ~undecided)


# ------------------------------------------------------------------ the grid
@pytest.mark.parametrize("roi, overlap", [(256, 0.25), (64, 0.25), (256, 0.5), (100, 0.3), (64, 0.0), (96, 0.9)])
def test_window_stride_is_monais(roi, overlap):
    assert window_stride((roi, roi), overlap) == _get_scan_interval((roi * 10, roi * 10), (roi, roi), 2, (overlap,) * 2)


@pytest.mark.parametrize(
    "shape, block_size, roi, overlap",
    [
        ((50, 70), 4096, 256, 0.25),
        ((300, 200), 64, 64, 0.25),
        ((1000, 777), 96, 64, 0.25),
        ((2000, 3100), 192, 256, 0.25),
        ((16384, 16384), 4096, 256, 0.25),
        ((911, 1203), 150, 100, 0.3),
    ],
)
def test_blocks_tile_the_image_on_the_window_grid(shape, block_size, roi, overlap):
    blocks = plan_blocks(shape, block_size, (roi, roi), overlap)
    stride = window_stride((roi, roi), overlap)
    for block in blocks:
        for axis, (core, region) in enumerate(zip(block.core, block.region)):
            assert 0 <= region.start <= core.start < core.stop <= region.stop <= shape[axis]
            assert region.start % stride[axis] == 0
            assert region.start == 0 or core.start - region.start >= roi
            assert region.stop == shape[axis] or region.stop - core.stop >= roi
    for axis, extent in enumerate(shape):  # the cores along each axis tile it; blocks are their products
        cores = sorted({(block.core[axis].start, block.core[axis].stop) for block in blocks})
        assert cores[0][0] == 0 and cores[-1][1] == extent
        assert all(stop == next_start for (_, stop), (next_start, _) in zip(cores, cores[1:]))
    corners = {(block.core[0].start, block.core[1].start) for block in blocks}
    assert len(corners) == len(blocks) == math.prod(len({b.core[axis].start for b in blocks}) for axis in range(2))


def _covering(starts, roi: int, pixel: int) -> set[int]:
    return {start for start in starts if start <= pixel < start + roi}


@pytest.mark.parametrize(
    "extent, block_size, roi, overlap", [(2000, 192, 256, 0.25), (1303, 100, 64, 0.25), (999, 50, 100, 0.3)]
)
def test_every_core_pixel_sees_the_whole_image_windows(extent, block_size, roi, overlap):
    """Along one axis (windows are products of per-axis windows): the windows MONAI places in a block that cover
    a core pixel are exactly those it places in the whole image."""
    stride = window_stride((roi, roi), overlap)[0]
    whole_interval = _get_scan_interval((extent,), (roi,), 1, (overlap,))
    assert whole_interval == (stride,)
    whole = [window[0].start for window in dense_patch_slices((extent,), (roi,), whole_interval)]
    for block in plan_blocks((extent, roi), block_size, (roi, roi), overlap):
        core, region = block.core[0], block.region[0]
        interval = _get_scan_interval((region.stop - region.start,), (roi,), 1, (overlap,))
        local = [region.start + w[0].start for w in dense_patch_slices((region.stop - region.start,), (roi,), interval)]
        for pixel in range(core.start, core.stop):
            assert _covering(local, roi, pixel) == _covering(whole, roi, pixel)


@pytest.mark.parametrize("block_size", [0, -4, 1.5, True, "64"])
def test_bad_block_size(block_size):
    with pytest.raises(ValueError, match="block_size"):
        plan_blocks((100, 100), block_size, (64, 64), 0.25)


# ------------------------------------------------------------------ statistics and normalisation
def test_streaming_statistics_are_the_whole_image_statistics(write_micrograph):
    image = np.random.default_rng(1).integers(0, 4096, size=(123, 77), dtype=np.uint16)
    with open_micrograph(write_micrograph("noise.tif", image)) as source:
        statistics = intensity_statistics(source, rows=100, chunk_pixels=500)  # 6 rows per chunk
    region = image[:100].astype(np.float64)
    assert statistics.pixels == region.size
    assert statistics.mean == pytest.approx(region.mean(), rel=1e-12)
    assert statistics.std == pytest.approx(region.std(), rel=1e-12)
    assert (statistics.minimum, statistics.maximum) == (region.min(), region.max())


@pytest.mark.parametrize("intensity", ["zscore", "unit", "none"])
def test_block_normalisation_is_the_bundles(write_micrograph, intensity):
    image = particles_image((90, 110))
    with open_micrograph(write_micrograph("particles.tif", image)) as source:
        statistics = intensity_statistics(source)
        block = normalise_block(source.read(slice(10, 60), slice(20, 90)), intensity, statistics)
    whole = intensity_transform(intensity)({"image": torch.from_numpy(image.astype(np.float32))})["image"]
    torch.testing.assert_close(block, whole[10:60, 20:90], rtol=0, atol=1e-5)


def test_constant_image_normalises_to_zero(write_micrograph):
    with open_micrograph(write_micrograph("flat.tif", np.full((20, 30), 7, np.uint8))) as source:
        statistics = intensity_statistics(source)
        for intensity in ("zscore", "unit"):
            normalised = normalise_block(source.read(slice(None), slice(None)), intensity, statistics)
            assert torch.count_nonzero(normalised) == 0


# ------------------------------------------------------------------ agreement with whole-image inference
@pytest.mark.parametrize("intensity", ["zscore", "unit"])
def test_blocks_match_whole_image_inference(write_micrograph, tiny_net, small_inferer, intensity):
    path = write_micrograph("particles.tif", particles_image((500, 400), bar_rows=BAR_ROWS))
    block, blocks = block_probability(path, tiny_net, small_inferer, block_size=96, intensity=intensity)
    assert len(blocks) == 25  # 5 block rows x 5 block columns: seams in both directions
    assert_matches_whole_image(block, whole_image_probability(path, tiny_net, small_inferer, intensity))


def test_blocks_match_whole_image_inference_with_the_bundle_window(write_micrograph, bundle_inferer):
    """The bundle's 256-pixel windows; a network whose output depends on where its windows lie."""
    network = context_network()
    path = write_micrograph("particles.tif", particles_image((1200, 1200), seed=3))
    block, blocks = block_probability(path, network, bundle_inferer, block_size=384)
    assert len(blocks) == 16
    assert_matches_whole_image(block, whole_image_probability(path, network, bundle_inferer))


def test_image_smaller_than_a_window(write_micrograph, tiny_net, small_inferer):
    path = write_micrograph("small.tif", particles_image((40, 50)))
    block, _ = block_probability(path, tiny_net, small_inferer, block_size=4096)
    assert block.shape == (40, 50)
    assert_matches_whole_image(block, whole_image_probability(path, tiny_net, small_inferer))


# ------------------------------------------------------------------ the written mask
def test_mask_file_is_the_bundles_mask(tmp_path, write_micrograph, tiny_net, small_inferer):
    image = particles_image((300, 260), bar_rows=BAR_ROWS)
    path = write_micrograph("sample_01.tif", image)
    output = tmp_path / "masks"
    written = segment_large_micrograph(path, output, tiny_net, small_inferer, block_size=64, progress=False)
    assert written == output / "sample_01_mask.tif"
    assert sorted(os.listdir(output)) == ["sample_01_mask.tif"]  # no temporary or scratch file left
    mask = tifffile.imread(written)
    assert mask.dtype == np.uint8 and mask.shape == image.shape
    assert set(np.unique(mask)) <= {0, 255}
    assert data_bar_rows(open_micrograph(path)) == detect_data_bar(image) == BAR_ROWS
    assert not mask[-BAR_ROWS:].any()
    whole = whole_image_probability(path, tiny_net, small_inferer)
    undecided = np.abs(whole - THRESHOLD) <= PROBABILITY_TOLERANCE
    assert not np.any(((mask == 255) != (whole > THRESHOLD)) & ~undecided)
    again = segment_large_micrograph(path, tmp_path / "again", tiny_net, small_inferer, block_size=4096, progress=False)
    np.testing.assert_array_equal(tifffile.imread(again), mask)  # one block or many: the same mask


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.stack([image, image, image], axis=-1)


@pytest.mark.parametrize(
    "name, convert, tiff_kwargs",
    [
        ("strips_zlib.tif", None, {"compression": "zlib", "rowsperstrip": 17}),
        ("tiles_zlib.tif", None, {"compression": "zlib", "tile": (64, 48)}),
        ("big_endian_16bit.tif", lambda a: a.astype(np.uint16), {"byteorder": ">"}),
        ("rgb_tiles.tif", _rgb, {"photometric": "rgb", "compression": "zlib", "tile": (64, 64)}),
        ("grey.png", None, None),
    ],
)
def test_every_format_gives_the_same_mask(
    tmp_path, write_micrograph, tiny_net, small_inferer, name, convert, tiff_kwargs
):
    image = particles_image((200, 170), seed=5)
    reference_path = write_micrograph("reference.tif", image)
    data = image if convert is None else convert(image)
    if tiff_kwargs is None:
        path = tmp_path / "inputs" / name
        Image.fromarray(data).save(path)
    else:
        path = write_micrograph(name, data, **tiff_kwargs)
    reference = segment_large_micrograph(reference_path, tmp_path / "ref", tiny_net, small_inferer, 96, progress=False)
    mask = segment_large_micrograph(path, tmp_path / "out", tiny_net, small_inferer, 96, progress=False)
    np.testing.assert_array_equal(tifffile.imread(mask), tifffile.imread(reference))
    assert os.listdir(tmp_path / "out") == [mask.name]  # the scratch file of a compressed input is gone


class FailingNetwork(nn.Module):
    """Raises on its ``fail_at``-th call."""

    def __init__(self, network: nn.Module, fail_at: int) -> None:
        super().__init__()
        self.network, self.fail_at, self.calls = network, fail_at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of luck")
        return self.network(x)


def test_interrupted_run_leaves_no_file(tmp_path, write_micrograph, tiny_net, small_inferer):
    path = write_micrograph("particles.tif", particles_image((300, 260)), compression="zlib")
    output = tmp_path / "masks"
    with pytest.raises(RuntimeError, match="out of luck"):
        segment_large_micrograph(path, output, FailingNetwork(tiny_net, 20), small_inferer, 64, progress=False)
    assert os.listdir(output) == []


# ------------------------------------------------------------------ bad input
def test_bad_arguments(tmp_path, write_micrograph, tiny_net, small_inferer):
    path = write_micrograph("particles.tif", particles_image((100, 90)))
    with pytest.raises(ValueError, match="intensity"):
        segment_large_micrograph(path, tmp_path, tiny_net, small_inferer, intensity="histogram")
    with pytest.raises(ValueError, match="threshold"):
        segment_large_micrograph(path, tmp_path, tiny_net, small_inferer, threshold=1.5)
    with pytest.raises(ValueError, match="SlidingWindowInferer"):
        segment_large_micrograph(path, tmp_path, tiny_net, SimpleInferer())
    with pytest.raises(ValueError, match="data-bar rows"):
        segment_large_micrograph(path, tmp_path, tiny_net, small_inferer, crop_bottom=100, progress=False)
    with pytest.raises(ValueError, match="crop_bottom"):
        segment_large_micrograph(path, tmp_path, tiny_net, small_inferer, crop_bottom=-1, progress=False)
    three_channels = nn.Conv2d(1, 3, 1)
    with pytest.raises(ValueError, match="3 output channels"):
        segment_large_micrograph(path, tmp_path, three_channels, small_inferer, progress=False)
    assert not list(tmp_path.glob("*_mask.tif"))


def test_separation_output_is_left_out_of_the_mask(tmp_path, write_micrograph, small_inferer):
    """A network with a separation channel: the mask comes from the particle channel alone."""
    path = write_micrograph("particles.tif", particles_image((100, 90)))
    particle = nn.Conv2d(1, 1, 1)
    with_separation = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        for network in (particle, with_separation):  # particle where the normalised intensity is above 0
            network.weight[:1].fill_(1.0)
            network.bias[:1].fill_(0.0)
        with_separation.weight[1:].fill_(-5.0)  # a separation channel unlike the particle one
        with_separation.bias[1:].fill_(1.0)
    masks = {}
    for name, network in (("one", particle), ("two", with_separation)):
        output = segment_large_micrograph(path, tmp_path / name, network, small_inferer, progress=False)
        masks[name] = tifffile.imread(output)
    assert 0 < masks["one"].mean() < 255  # particles and background
    np.testing.assert_array_equal(masks["one"], masks["two"])


def test_unreadable_inputs(tmp_path, write_micrograph, tiny_net, small_inferer):
    pages = write_micrograph("stack.tif", np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(MicrographReadError, match="multi-page"):
        segment_large_micrograph(pages, tmp_path, tiny_net, small_inferer)
    with pytest.raises(MicrographReadError, match="no such file"):
        segment_large_micrograph(tmp_path / "missing.tif", tmp_path, tiny_net, small_inferer)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(b"II*\x00" + b"\x00" * 10)
    with pytest.raises(MicrographReadError, match="truncated.tif"):
        segment_large_micrograph(truncated, tmp_path, tiny_net, small_inferer)


# ------------------------------------------------------------------ where the windows are stitched
GIB = 1 << 30


def test_stitching_on_the_gpu_when_the_block_fits(bundle_inferer):
    cuda = torch.device("cuda")
    assert stitching_options(bundle_inferer, (4864, 4864), torch.device("cpu")) == {}
    assert stitching_options(bundle_inferer, (4864, 4864), cuda, free_bytes=40 * GIB) == {}
    options = stitching_options(bundle_inferer, (20000, 20000), cuda, free_bytes=8 * GIB)
    assert options["device"] == torch.device("cpu") and options["buffer_steps"] >= 1
    adaptive = SlidingWindowInfererAdapt(BUNDLE_ROI, overlap=OVERLAP, mode="gaussian")
    assert stitching_options(adaptive, (20000, 20000), cuda, free_bytes=8 * GIB) == {}
    fixed = SlidingWindowInferer(BUNDLE_ROI, overlap=OVERLAP, device="cpu")
    assert stitching_options(fixed, (20000, 20000), cuda, free_bytes=8 * GIB) == {}


def test_stitching_on_the_cpu_in_buffered_slabs_gives_the_same_probability(monkeypatch, tiny_net, small_inferer):
    """The options of the GPU fallback (MONAI's ``device``, ``buffer_steps``, ``buffer_dim``), exercised on CPU."""
    image = torch.randn(300, 200, generator=torch.Generator().manual_seed(0))
    plain = predict_probability(image, tiny_net, small_inferer, torch.device("cpu"))
    fallback = stitching_options(small_inferer, (20000, 20000), torch.device("cuda"), free_bytes=GIB)
    monkeypatch.setattr(blocks_module, "stitching_options", lambda *args, **kwargs: fallback)
    buffered = predict_probability(image, tiny_net, small_inferer, torch.device("cpu"))
    np.testing.assert_allclose(buffered, plain, rtol=0, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True])
def test_gpu_blocks_match_cpu(tmp_path, write_micrograph, small_inferer, amp):
    path = write_micrograph("particles.tif", particles_image((500, 400), bar_rows=BAR_ROWS))
    network = tiny_network()
    cpu, _ = block_probability(path, network, small_inferer, block_size=96)
    gpu, _ = block_probability(path, network.cuda(), small_inferer, block_size=96, device="cuda", amp=amp)
    tolerance = 1e-2 if amp else 1e-4
    assert np.abs(gpu - cpu).max() <= tolerance
    assert np.mean((gpu > THRESHOLD) != (cpu > THRESHOLD)) < 1e-3
