"""Tests for reading micrographs: dtypes, formats, colour to grey, pixel size from metadata, bad files, and region
reads that give what a whole read gives."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor

from rformer_monai.transforms import (
    LoadMicrograph,
    MicrographReader,
    MicrographReadError,
    open_micrograph,
    pixel_size_from_meta,
)
from rformer_monai.transforms.io import read_micrograph

LUMA = np.array([0.299, 0.587, 0.114])
# colours with their exact 8-bit luma: black, red, green, blue, white, grey
COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [100, 100, 100]], np.uint8)
COLOUR_GREYS = np.array([0, 76, 150, 29, 255, 100], np.uint8)  # rint(colour @ LUMA)
PALETTE_INDICES = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
ZEISS_TAG = 34118
FEI_HELIOS_TAG = 34682
FEI_SFEG_TAG = 34680
BAM_PIXEL_SIZE_NM = 7.344
BAM_SHAPE = (768, 1024)


def ramp(dtype, shape=(6, 7)) -> np.ndarray:
    """Values spanning the dtype's range, so that any rescaling or truncation shows."""
    if np.issubdtype(dtype, np.floating):
        return np.linspace(-1.5, 2.5, math.prod(shape), dtype=dtype).reshape(shape)
    info = np.iinfo(dtype)
    return np.linspace(info.min, info.max, math.prod(shape)).round().astype(dtype).reshape(shape)


def zeiss_tag(pixel_size: float, unit: str) -> tuple:
    """A CZ_SEM tag as Zeiss writes it: upper-case keys, "name = value unit" lines, Latin-1 text (µm)."""
    text = f"\r\nAP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = {pixel_size} {unit}\r\nAP_WD\r\nWD = 4.9 mm\r\n"
    return (ZEISS_TAG, "s", 0, text.encode("latin-1"), True)


# ------------------------------------------------------------------------------------------
# dtypes and formats


@pytest.mark.parametrize(
    "dtype, source_max", [(np.uint8, 255.0), (np.uint16, 65535.0), (np.float32, 1.0)], ids=["8bit", "16bit", "float32"]
)
def test_tiff_values_and_dtype_are_kept(write_tiff, dtype, source_max):
    array = ramp(dtype)
    path = write_tiff("image.tif", array)
    micrograph = read_micrograph(path)
    assert micrograph.array.dtype == dtype
    np.testing.assert_array_equal(micrograph.array, array)
    assert micrograph.meta["source_dtype"] == np.dtype(dtype).name
    assert micrograph.meta["source_max"] == source_max
    assert micrograph.meta["colour_conversion"] == "none"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_values_are_kept(write_image, dtype):
    array = ramp(dtype)
    micrograph = read_micrograph(write_image("image.png", array))
    assert micrograph.array.dtype == dtype
    np.testing.assert_array_equal(micrograph.array, array)
    assert micrograph.meta["source_max"] == float(np.iinfo(dtype).max)


def test_jpeg_is_read_approximately(write_image):
    array = np.tile(np.linspace(0, 240, 32).astype(np.uint8), (32, 1))  # smooth: little JPEG loss
    micrograph = read_micrograph(write_image("image.jpg", array, quality=95))
    assert micrograph.array.dtype == np.uint8
    assert micrograph.array.shape == array.shape
    assert np.abs(micrograph.array.astype(int) - array).max() <= 4


def test_bmp_is_read(write_image):
    array = ramp(np.uint8)
    np.testing.assert_array_equal(read_micrograph(write_image("image.bmp", array)).array, array)


@pytest.mark.parametrize("suffix", [".tif", ".TIFF", ".png"])
def test_load_micrograph_gives_channel_first_metatensor(write_tiff, write_image, suffix):
    array = ramp(np.uint8)
    path = write_tiff(f"image{suffix}", array) if "tif" in suffix.lower() else write_image(f"image{suffix}", array)
    image = LoadMicrograph()(path)
    assert isinstance(image, MetaTensor)
    assert image.shape == (1, *array.shape)
    assert image.dtype == torch.float32
    np.testing.assert_array_equal(image[0].numpy(), array)
    assert str(path) in str(image.meta["filename_or_obj"])


# ------------------------------------------------------------------------------------------
# colour to grey


def test_palette_tiff_becomes_grey_by_luma(write_tiff):
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, : len(COLOURS)] = COLOURS.T.astype(np.uint16) * 257  # 16-bit palette entries
    path = write_tiff("palette.tif", PALETTE_INDICES, photometric="palette", colormap=colormap)
    micrograph = read_micrograph(path)
    assert micrograph.meta["colour_conversion"] == "palette"
    assert micrograph.array.dtype == np.uint8
    np.testing.assert_array_equal(micrograph.array, COLOUR_GREYS[PALETTE_INDICES])


def test_palette_png_becomes_grey_by_luma(tmp_path):
    from PIL import Image

    image = Image.fromarray(PALETTE_INDICES, "P")
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(COLOURS)] = COLOURS
    image.putpalette(palette.ravel().tolist())
    path = tmp_path / "palette.png"
    image.save(path)
    micrograph = read_micrograph(path)
    assert micrograph.meta["colour_conversion"] == "palette"
    np.testing.assert_array_equal(micrograph.array, COLOUR_GREYS[PALETTE_INDICES])


def rgb_image() -> np.ndarray:
    return COLOURS[PALETTE_INDICES]  # (2, 3, 3)


@pytest.mark.parametrize("alpha", [False, True], ids=["rgb", "rgba"])
@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_rgb_and_rgba_become_grey_by_luma(write_tiff, write_image, suffix, alpha):
    array = rgb_image()
    if alpha:  # alpha is ignored, whatever its value
        array = np.dstack([array, np.array([[0, 80, 255], [255, 10, 0]], np.uint8)])
    if suffix == ".tif":
        path = write_tiff(f"colour{suffix}", array, photometric="rgb")
    else:
        path = write_image(f"colour{suffix}", array, mode="RGBA" if alpha else "RGB")
    micrograph = read_micrograph(path)
    assert micrograph.meta["colour_conversion"] == ("rgba" if alpha else "rgb")
    assert micrograph.array.dtype == np.uint8
    np.testing.assert_array_equal(micrograph.array, COLOUR_GREYS[PALETTE_INDICES])


def test_rgb_tiff_in_separate_planes_becomes_grey(write_tiff):
    planes = np.moveaxis(rgb_image(), -1, 0)  # (3, H, W)
    micrograph = read_micrograph(write_tiff("planar.tif", planes, photometric="rgb", planarconfig="separate"))
    assert micrograph.meta["colour_conversion"] == "rgb"
    np.testing.assert_array_equal(micrograph.array, COLOUR_GREYS[PALETTE_INDICES])


def test_16bit_rgb_tiff_keeps_its_dtype(write_tiff):
    array = COLOURS[PALETTE_INDICES].astype(np.uint16) * 257
    micrograph = read_micrograph(write_tiff("colour16.tif", array, photometric="rgb"))
    assert micrograph.array.dtype == np.uint16
    expected = np.rint(array.astype(float) @ LUMA).astype(np.uint16)
    np.testing.assert_array_equal(micrograph.array, expected)
    assert micrograph.meta["source_max"] == 65535.0


# ------------------------------------------------------------------------------------------
# pixel size


@pytest.mark.parametrize("value, unit, expected_nm", [(7.344, "nm", 7.344), (0.0125, "µm", 12.5), (3.5, "pm", 0.0035)])
def test_pixel_size_from_zeiss_tag(write_tiff, value, unit, expected_nm):
    path = write_tiff("zeiss.tif", np.zeros((8, 8), np.uint8), extratags=[zeiss_tag(value, unit)])
    with tifffile.TiffFile(path) as tif:  # the tag is the one tifffile parses as Zeiss SEM metadata
        assert tif.sem_metadata["ap_image_pixel_size"][1] == value
    meta = read_micrograph(path).meta
    assert meta["pixel_size_nm"] == pytest.approx(expected_nm)
    assert meta["pixel_size_source"] == "zeiss"


@pytest.mark.parametrize("tag", [FEI_HELIOS_TAG, FEI_SFEG_TAG])
@pytest.mark.parametrize("section", ["Scan", "EScan", "Image"])
def test_pixel_size_from_fei_tag(write_tiff, tag, section):
    text = f"[User]\nUser=someone\n[{section}]\nPixelWidth=2.5e-09\nPixelHeight=2.5e-09\n"
    path = write_tiff("fei.tif", np.zeros((8, 8), np.uint8), extratags=[(tag, "s", 0, text, True)])
    meta = read_micrograph(path).meta
    assert meta["pixel_size_nm"] == pytest.approx(2.5)
    assert meta["pixel_size_source"] == "fei"


@pytest.mark.parametrize(
    "unit, pixel_size_in_unit, expected_nm",
    [("nm", 2.5, 2.5), ("um", 0.004, 4.0), ("micron", 0.004, 4.0), ("microns", 0.004, 4.0)],
)
def test_pixel_size_from_imagej_metadata(write_tiff, unit, pixel_size_in_unit, expected_nm):
    resolution = (1 / pixel_size_in_unit, 1 / pixel_size_in_unit)  # pixels per unit
    path = write_tiff(
        "imagej.tif", np.zeros((8, 8), np.uint8), imagej=True, resolution=resolution, metadata={"unit": unit}
    )
    meta = read_micrograph(path).meta
    assert meta["pixel_size_nm"] == pytest.approx(expected_nm, rel=1e-6)
    assert meta["pixel_size_source"] == "imagej"


def test_imagej_pixel_unit_is_unknown(write_tiff):
    path = write_tiff(
        "imagej.tif", np.zeros((8, 8), np.uint8), imagej=True, resolution=(1, 1), metadata={"unit": "pixel"}
    )
    meta = read_micrograph(path).meta
    assert math.isnan(meta["pixel_size_nm"])
    assert meta["pixel_size_source"] == "unknown"


def test_pixel_size_from_centimetre_resolution(write_tiff):
    pixels_per_cm = 1e7 / 5.0  # 5 nm pixels
    path = write_tiff(
        "cm.tif", np.zeros((8, 8), np.uint8), resolution=(pixels_per_cm, pixels_per_cm), resolutionunit="CENTIMETER"
    )
    meta = read_micrograph(path).meta
    assert meta["pixel_size_nm"] == pytest.approx(5.0, rel=1e-6)
    assert meta["pixel_size_source"] == "tiff_resolution"


@pytest.mark.parametrize(
    "tiff_kwargs",
    [{}, {"resolution": (72, 72), "resolutionunit": "INCH"}, {"resolution": (300, 300), "resolutionunit": "NONE"}],
    ids=["no-tags", "inch-dpi", "no-unit"],
)
def test_unknown_pixel_size_is_nan_in_meta_and_none_from_meta(write_tiff, tiff_kwargs):
    path = write_tiff("plain.tif", np.zeros((8, 8), np.uint8), **tiff_kwargs)
    meta = read_micrograph(path).meta
    assert math.isnan(meta["pixel_size_nm"])
    assert meta["pixel_size_source"] == "unknown"
    assert pixel_size_from_meta(meta) is None
    image = LoadMicrograph()(path)
    assert pixel_size_from_meta(image.meta) is None


def test_unknown_pixel_size_for_png(write_image):
    meta = read_micrograph(write_image("plain.png", np.zeros((8, 8), np.uint8))).meta
    assert pixel_size_from_meta(meta) is None
    assert meta["pixel_size_source"] == "unknown"


def test_zeiss_tag_wins_over_resolution_tags(write_tiff):
    path = write_tiff(
        "both.tif",
        np.zeros((8, 8), np.uint8),
        extratags=[zeiss_tag(7.344, "nm")],
        resolution=(1e6, 1e6),
        resolutionunit="CENTIMETER",
    )
    assert read_micrograph(path).meta["pixel_size_source"] == "zeiss"


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_explicit_pixel_size_overrides_metadata(write_tiff, write_image, suffix):
    array = np.zeros((8, 8), np.uint8)
    if suffix == ".tif":
        path = write_tiff("zeiss.tif", array, extratags=[zeiss_tag(7.344, "nm")])
    else:
        path = write_image("plain.png", array)
    meta = read_micrograph(path, pixel_size_nm=3.0).meta
    assert meta["pixel_size_nm"] == 3.0
    assert meta["pixel_size_source"] == "given"
    image = LoadMicrograph(pixel_size_nm=3.0)(path)
    assert pixel_size_from_meta(image.meta) == 3.0


def test_pixel_size_from_meta_reads_collated_values():
    assert pixel_size_from_meta({"pixel_size_nm": torch.tensor([7.344])}) == pytest.approx(7.344)
    assert pixel_size_from_meta({"pixel_size_nm": np.float64(2.0)}) == 2.0
    assert pixel_size_from_meta({"pixel_size_nm": torch.tensor([float("nan")])}) is None
    assert pixel_size_from_meta({}) is None


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_bad_pixel_size_argument_raises(write_tiff, bad):
    path = write_tiff("image.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="pixel_size_nm must be positive"):
        read_micrograph(path, pixel_size_nm=bad)
    with pytest.raises(ValueError, match="pixel_size_nm must be positive"):
        MicrographReader(pixel_size_nm=bad)


# ------------------------------------------------------------------------------------------
# bad files: every error names the file


def assert_names_file(error: pytest.ExceptionInfo, path) -> None:
    assert error.value.path == str(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.tif"
    with pytest.raises(MicrographReadError, match="no such file") as error:
        read_micrograph(path)
    assert_names_file(error, path)


@pytest.mark.parametrize("name", ["empty.tif", "empty.png"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.touch()
    with pytest.raises(MicrographReadError, match=r"empty \(0 bytes\)") as error:
        read_micrograph(path)
    assert_names_file(error, path)


@pytest.mark.parametrize("keep_fraction", [0.02, 0.5])
def test_truncated_tiff(write_tiff, keep_fraction):
    path = write_tiff("cut.tif", ramp(np.uint16, (64, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(MicrographReadError, match="not a readable TIFF") as error:
        read_micrograph(path)
    assert_names_file(error, path)


def test_truncated_png(write_image):
    path = write_image("cut.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(MicrographReadError, match="not a readable image") as error:
        read_micrograph(path)
    assert_names_file(error, path)


@pytest.mark.parametrize("name", ["notes.tif", "notes.png"])
def test_text_file_with_image_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not a micrograph\n" * 10)
    with pytest.raises(MicrographReadError, match="not a readable") as error:
        read_micrograph(path)
    assert_names_file(error, path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "image.txt"
    path.write_text("text")
    with pytest.raises(MicrographReadError, match="unsupported file type '.txt'") as error:
        read_micrograph(path)
    assert_names_file(error, path)


def test_multi_page_tiff(write_tiff):
    path = write_tiff("stack.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(MicrographReadError, match=r"multi-page TIFF \(3 pages\)") as error:
        read_micrograph(path)
    assert_names_file(error, path)


@pytest.mark.parametrize(
    "shape, tiff_kwargs",
    [
        ((5, 8, 8), {"photometric": "minisblack", "planarconfig": "separate"}),
        ((8, 8, 5), {"photometric": "minisblack", "planarconfig": "contig"}),
    ],
    ids=["planes-first", "samples-last"],
)
def test_single_page_3d_stack(write_tiff, shape, tiff_kwargs):
    path = write_tiff("stack3d.tif", np.zeros(shape, np.uint8), **tiff_kwargs)
    with pytest.raises(MicrographReadError, match=re.escape(f"shape {shape}")) as error:
        read_micrograph(path)
    assert_names_file(error, path)


def test_reader_reads_one_file_at_a_time(write_tiff):
    path = write_tiff("image.tif", np.zeros((8, 8), np.uint8))
    reader = MicrographReader()
    assert reader.verify_suffix([path, "other.PNG"])
    assert not reader.verify_suffix("volume.nii.gz")
    with pytest.raises(ValueError, match="one file at a time, got 2"):
        reader.read([path, path])


# ------------------------------------------------------------------------------------------
# region by region: the grey values and metadata of a whole read, whatever the layout

FIVE_NM_PER_PIXEL = {"resolution": (1e7 / 5.0, 1e7 / 5.0), "resolutionunit": "CENTIMETER"}


def palette_image(shape=(40, 50)) -> tuple[np.ndarray, dict]:
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, : len(COLOURS)] = COLOURS.T.astype(np.uint16) * 257
    indices = np.random.default_rng(1).integers(0, len(COLOURS), shape).astype(np.uint8)
    return indices, {"photometric": "palette", "colormap": colormap}


def noise_image(shape=(40, 50), dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


# name -> (array, tifffile keyword arguments, how it is read: "memmap", "scratch" or "memory")
LAYOUTS = {
    "uncompressed": (noise_image(), {}, "memmap"),
    "big-endian-16bit": (noise_image(dtype=np.uint16), {"byteorder": ">"}, "memmap"),
    "zlib-strips": (noise_image(), {"compression": "zlib", "rowsperstrip": 7}, "scratch"),
    "zlib-tiles": (noise_image(), {"compression": "zlib", "tile": (16, 32)}, "scratch"),
    "rgb-tiles": (noise_image((40, 50, 3)), {"photometric": "rgb", "compression": "zlib", "tile": (16, 16)}, "scratch"),
    "palette": (*palette_image(), "scratch"),
    "rgb-planes": (noise_image((3, 40, 50)), {"photometric": "rgb", "planarconfig": "separate"}, "memory"),
}


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
def test_region_reads_give_the_whole_read(tmp_path, write_tiff, layout):
    array, tiff_kwargs, how = LAYOUTS[layout]
    path = write_tiff(f"{layout}.tif", array, **tiff_kwargs, **FIVE_NM_PER_PIXEL)
    whole = read_micrograph(path)
    scratch_dir = tmp_path / "scratch"
    with open_micrograph(path, scratch_dir) as source:
        assert source.in_memory == (how == "memory")
        assert len(list(scratch_dir.glob("*"))) == (how == "scratch")
        assert source.shape == whole.array.shape and source.dtype.newbyteorder("=") == whole.array.dtype
        assert source.meta == whole.meta
        np.testing.assert_array_equal(source.read(slice(None), slice(None)), whole.array)
        np.testing.assert_array_equal(source.read(slice(3, 29), slice(17, 41)), whole.array[3:29, 17:41])
    assert whole.meta["pixel_size_nm"] == pytest.approx(5.0, rel=1e-6)
    assert list(scratch_dir.glob("*")) == []


def test_region_reads_of_a_png_and_a_given_pixel_size(write_image):
    path = write_image("colour.png", noise_image((20, 30, 3)))
    with open_micrograph(path, pixel_size_nm=2.5) as source:
        assert source.in_memory
        assert source.meta == read_micrograph(path, pixel_size_nm=2.5).meta
        assert source.meta["pixel_size_source"] == "given" and source.meta["colour_conversion"] == "rgb"
    with pytest.raises(ValueError, match="pixel_size_nm must be positive"):
        open_micrograph(path, pixel_size_nm=-1.0)


@pytest.mark.parametrize(
    "array, tiff_kwargs",
    [
        (np.zeros((3, 8, 8), np.uint8), {"photometric": "minisblack"}),
        (np.zeros((8, 8, 5), np.uint8), {"photometric": "minisblack", "planarconfig": "contig"}),
        (np.ones((8, 8), np.complex64), {}),
        (ramp(np.uint16, (64, 64)), {"compression": "zlib"}),
    ],
    ids=["multi-page", "five-samples", "complex", "truncated"],
)
def test_region_and_whole_reads_refuse_a_file_alike(write_tiff, array, tiff_kwargs):
    path = write_tiff("bad.tif", array, **tiff_kwargs)
    if array.dtype == np.uint16:
        path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(MicrographReadError) as whole:
        read_micrograph(path)
    with pytest.raises(MicrographReadError) as region:
        open_micrograph(path)
    assert str(region.value) == str(whole.value)
    assert_names_file(region, path)


# ------------------------------------------------------------------------------------------
# the real BAM TiO2 SEM data (skipped where absent)


def bam_files(bam_dataset_dir):
    from rformer_monai.data.discovery import discover_pairs

    pairs = discover_pairs(bam_dataset_dir)
    assert len(pairs) == 30
    return pairs


def test_bam_images_pixel_size_and_shape(bam_dataset_dir):
    loader = LoadMicrograph()
    for pair in bam_files(bam_dataset_dir):
        image = loader(pair["image"])
        assert image.shape == (1, *BAM_SHAPE)
        assert pixel_size_from_meta(image.meta) == pytest.approx(BAM_PIXEL_SIZE_NM), pair["image"]
        assert image.meta["pixel_size_source"] == "zeiss"
        assert image.meta["source_dtype"] == "uint8"


def test_bam_masks_are_binary_with_about_ten_percent_particles(bam_dataset_dir):
    foreground_fractions = []
    for pair in bam_files(bam_dataset_dir):
        mask = read_micrograph(pair["label"]).array
        assert mask.shape == BAM_SHAPE
        assert set(np.unique(mask)) <= {0, 255}, pair["label"]
        foreground_fractions.append(np.mean(mask == 255))
    assert 0.05 < np.mean(foreground_fractions) < 0.2
