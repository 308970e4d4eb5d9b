"""The bundle's inference (inference.json), streamed in blocks, writes what the analysis of the whole image at once
writes: mask, labels, particle table, ROIs and record, for bright and dark particles, with and without background
flattening."""

from __future__ import annotations

import json
import zipfile

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
from rformer_monai.particles import particle_step_maps, separation_map
from rformer_monai.particles.imagej import PixelSize
from rformer_monai.particles.separation import DEFAULT_PARTICLE_THRESHOLD, DEFAULT_VALLEY_GAIN
from rformer_monai.reports.tables import analyse_particles, write_particle_outputs
from rformer_monai.transforms import inference_transforms
from rformer_monai.transforms.array import DATA_BAR_ROWS_KEY
from rformer_monai.transforms.contrast import CONTRAST_KEY, CONTRAST_SCORE_KEY
from rformer_monai.trust import trust_statistics, trust_warning

PIXEL_SIZE_NM = 1.5
SUFFIXES = (
    "_mask.tif", "_labels.tif", "_particles.csv", "_rois.zip", "_overlay.png", "_psd.png", "_image.json"
)


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


def whole_image_prediction(path, network, inferer, contrast="bright", flatten_background=False):
    """The whole image at once: the bundle's preprocessing, sliding window, sigmoid, separation channel split,
    ``Invertd`` (data bar back as 0)."""
    preprocessing = inference_transforms(
        pixel_size_nm=PIXEL_SIZE_NM, contrast=contrast, flatten_background=flatten_background
    )
    data = preprocessing({"image": str(path)})
    with torch.inference_mode():
        outputs = torch.sigmoid(inferer(data["image"][None].as_tensor(), network))[0]
    for key, channels in (("pred", outputs[:1]), ("pred_separation", outputs[1:])):
        data[key] = MetaTensor(channels, meta=data["image"].meta, applied_operations=data["image"].applied_operations)
    return Invertd(keys=["pred", "pred_separation"], transform=preprocessing, orig_keys="image", nearest_interp=False)(
        data
    )


def _zip_entries(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def whole_image_mask(path, output_dir, network, inferer):
    """The whole-image mask of :func:`whole_image_prediction`, written as the bundle writes it."""
    probability = whole_image_prediction(path, network, inferer)["pred"].numpy()[0]
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


@pytest.mark.parametrize(("dark", "contrast", "flatten_background"), [(False, "auto", False), (True, "auto", True)])
def test_blocks_write_the_whole_image_particle_analysis(tmp_path, write_tiff, dark, contrast, flatten_background):
    """Every per-image output of the streamed analysis (network blocks of 96 px, particle blocks of 64 px) equals the
    in-memory analysis of the whole prediction: labels, ImageJ table, ROIs and the record's contrast and trust check;
    dark particles are decided, inverted and flattened as the whole-image pipeline does it."""
    network = particle_network()
    image = particles_image((330, 420), seed=3, bar_rows=30)
    path = write_tiff("micrograph.tif", np.iinfo(image.dtype).max - image if dark else image)
    inferer = SlidingWindowInferer((64, 64), sw_batch_size=4, overlap=0.25, mode="gaussian")
    data = whole_image_prediction(path, network, inferer, contrast, flatten_background)
    prediction = data["pred"]
    bar_rows = int(prediction.meta[DATA_BAR_ROWS_KEY])
    probability = prediction.numpy()[0]
    separation = data["pred_separation"].numpy()
    step, cut = particle_step_maps(probability, separation_map(separation), DEFAULT_VALLEY_GAIN)
    analysis = analyse_particles(
        step > DEFAULT_PARTICLE_THRESHOLD, tifffile.imread(path), PixelSize(PIXEL_SIZE_NM, "given"), bar_rows,
        probability=cut,
    )
    statistics = trust_statistics(probability[: probability.shape[0] - bar_rows], prediction.meta[CONTRAST_SCORE_KEY])
    expected_dir, streamed_dir = tmp_path / "whole", tmp_path / "blocks"
    extra = {
        "contrast": prediction.meta[CONTRAST_KEY],
        "contrast_score": prediction.meta[CONTRAST_SCORE_KEY],
        "warning": trust_warning(statistics),
    }
    expected = write_particle_outputs(
        analysis, tifffile.imread(path), expected_dir, "micrograph", source=str(path), extra=extra
    )
    row = analyse_micrograph(
        path, streamed_dir, network, inferer, block_size=96, contrast=contrast, flatten_background=flatten_background,
        pixel_size_nm=PIXEL_SIZE_NM, particle_block_size=64, particle_halo_px=16,
    )
    assert expected["particle_count"] > 10
    assert row["contrast"] == ("dark" if dark else "bright")
    for name in ("particle_count", "ecd_median", "area_fraction", "warning"):
        assert row[name] == expected[name], name
    for suffix in ("_labels.tif", "_particles.csv"):
        assert (streamed_dir / f"micrograph{suffix}").read_bytes() == (expected_dir / f"micrograph{suffix}").read_bytes()
    rois, expected_rois = (_zip_entries(folder / "micrograph_rois.zip") for folder in (streamed_dir, expected_dir))
    assert len(rois) == expected["particle_count"] and rois == expected_rois
    record, expected_record = (json.loads((folder / "micrograph_image.json").read_text()) for folder in
                               (streamed_dir, expected_dir))
    assert record.pop("contrast_score") == pytest.approx(expected_record.pop("contrast_score"), abs=1e-12)
    assert record == expected_record


def test_images_above_the_in_memory_size_are_tiled_and_calibrated(tmp_path, tiny_net, write_tiff, monkeypatch):
    """Mask and labels too large to gather are streamed to tiled TIFFs with the same pixels, the pixel size in cm."""
    path = write_tiff("small.tif", particles_image((130, 250), seed=1))
    inferer = SlidingWindowInferer((64, 64), sw_batch_size=4, overlap=0.25, mode="gaussian")
    analyse_micrograph(path, tmp_path / "whole", tiny_net, inferer, crop_bottom=0, pixel_size_nm=PIXEL_SIZE_NM)
    monkeypatch.setattr("rformer_monai.inference.streaming.IN_MEMORY_IMAGE_PIXELS", 100)
    analyse_micrograph(path, tmp_path / "tiled", tiny_net, inferer, crop_bottom=0, pixel_size_nm=PIXEL_SIZE_NM)
    for suffix in ("_mask.tif", "_labels.tif"):
        with tifffile.TiffFile(tmp_path / "tiled" / f"small{suffix}") as tiled:
            page = tiled.pages[0]
            assert page.is_tiled and page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            numerator, denominator = page.tags["XResolution"].value
            assert 1e7 / (numerator / denominator) == pytest.approx(PIXEL_SIZE_NM)
            np.testing.assert_array_equal(page.asarray(), tifffile.imread(tmp_path / "whole" / f"small{suffix}"))
