"""The streamed inference (inference_large.json) writes the whole-image inference's mask, and what the particle
analysis of the whole image at once writes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from inference_helpers import particles_image
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import Invertd

from rformer_monai.files import MASK_FOREGROUND
from rformer_monai.inference import analyse_micrograph
from rformer_monai.transforms import inference_transforms

PIXEL_SIZE_NM = 1.5
SUFFIXES = ("_mask.tif", "_labels.tif", "_particles.csv", "_overlay.png", "_psd.png")


def particle_network() -> torch.nn.Module:
    """Two outputs from one 3x3 convolution: particle logits that find the bright disks (a 3x3 mean of the unit
    intensity, shifted), and a separation output that is high at intensity edges."""
    network = torch.nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        network.weight[0] = 12.0 / 9.0
        network.bias[0] = -4.0
        network.weight[1] = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])
        network.bias[1] = -2.0
    return network.eval()


def whole_image_mask(path, output_dir, network, inferer):
    """The bundle's whole-image inference (inference.json): preprocessing, sliding window, sigmoid, separation
    channel split, ``Invertd`` (data bar back as 0), mask."""
    preprocessing = inference_transforms(pixel_size_nm=PIXEL_SIZE_NM, contrast="bright")
    data = preprocessing({"image": str(path)})
    with torch.inference_mode():
        outputs = torch.sigmoid(inferer(data["image"][None].as_tensor(), network))[0]
    for key, channels in (("pred", outputs[:1]), ("pred_separation", outputs[1:])):
        data[key] = MetaTensor(channels, meta=data["image"].meta, applied_operations=data["image"].applied_operations)
    data = Invertd(keys=["pred", "pred_separation"], transform=preprocessing, orig_keys="image", nearest_interp=False)(
        data
    )
    probability = data["pred"].numpy()[0]
    tifffile.imwrite(output_dir / f"{path.stem}_mask.tif", ((probability > 0.5) * MASK_FOREGROUND).astype(np.uint8))


@pytest.mark.parametrize("valley_gain", [0.0, 4.0])
def test_blocks_write_what_the_whole_image_writes(tmp_path, write_tiff, valley_gain):
    """A 330 x 420 micrograph with a 30-row data bar: network blocks of 96 px and particle blocks of 64 px."""
    network = particle_network()
    path = write_tiff("micrograph.tif", particles_image((330, 420), seed=3, bar_rows=30))
    inferer = SlidingWindowInferer((64, 64), sw_batch_size=4, overlap=0.25, mode="gaussian")
    expected_dir, streamed_dir, one_block_dir = tmp_path / "whole", tmp_path / "blocks", tmp_path / "one_block"
    expected_dir.mkdir()
    whole_image_mask(path, expected_dir, network, inferer)
    # the particle analysis of the whole image at once: one network block, one particle block
    expected = analyse_micrograph(
        path,
        one_block_dir,
        network,
        inferer,
        block_size=1024,
        pixel_size_nm=PIXEL_SIZE_NM,
        valley_gain=valley_gain,
        particle_block_size=1024,
    )
    row = analyse_micrograph(
        path,
        streamed_dir,
        network,
        inferer,
        block_size=96,
        pixel_size_nm=PIXEL_SIZE_NM,
        valley_gain=valley_gain,
        particle_block_size=64,
        particle_halo_px=16,
    )
    assert expected["particle_count"] > 10
    assert {name: row[name] for name in row if name != "ecd_values"} == {
        name: expected[name] for name in expected if name != "ecd_values"
    }
    np.testing.assert_array_equal(row["ecd_values"], expected["ecd_values"])
    for reference in (expected_dir, one_block_dir):
        np.testing.assert_array_equal(
            tifffile.imread(streamed_dir / "micrograph_mask.tif"), tifffile.imread(reference / "micrograph_mask.tif")
        )
    np.testing.assert_array_equal(
        tifffile.imread(streamed_dir / "micrograph_labels.tif"),
        tifffile.imread(one_block_dir / "micrograph_labels.tif"),
    )
    for suffix in ("_particles.csv", "_overlay.png", "_psd.png"):
        assert (streamed_dir / f"micrograph{suffix}").read_bytes() == (
            one_block_dir / f"micrograph{suffix}"
        ).read_bytes()
    assert sorted(path.name for path in streamed_dir.iterdir()) == sorted(f"micrograph{suffix}" for suffix in SUFFIXES)


def test_large_image_overlay_is_downsampled(tmp_path, tiny_net, write_tiff, monkeypatch):
    monkeypatch.setattr("rformer_monai.inference.streaming.OVERLAY_SOURCE_SIDE_PX", 100)
    path = write_tiff("wide.tif", particles_image((130, 250), seed=1))
    inferer = SlidingWindowInferer((64, 64), sw_batch_size=4, overlap=0.25, mode="gaussian")
    row = analyse_micrograph(path, tmp_path, tiny_net, inferer, block_size=96, crop_bottom=0)
    assert row["unit"] == "px"
    assert tifffile.imread(tmp_path / "wide_labels.tif").shape == (130, 250)
    assert (tmp_path / "wide_overlay.png").stat().st_size > 0
