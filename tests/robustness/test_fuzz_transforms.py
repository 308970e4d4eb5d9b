"""Fuzzing the reader, the data-bar detector, the mask binarisation and the pipelines with random shapes,
dtypes, values and bytes: they either work (with the documented outputs) or raise the documented errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor
from PIL import Image

from rformer_monai.transforms import (
    BinarizeMask,
    MicrographReadError,
    detect_data_bar,
    inference_transforms,
    read_micrograph,
    train_transforms,
    validation_transforms,
)
from rformer_monai.transforms.databar import MAX_BAR_FRACTION
from rformer_monai.workflows import find_user_error

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.float16, np.float32, np.float64, np.bool_]
SIDE = st.integers(1, 20)


def dtypes():
    return st.sampled_from(DTYPES).map(np.dtype)


def arrays(dtype, shape, finite: bool = False):
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=not finite, allow_infinity=not finite, width=dtype.itemsize * 8)
        if finite:
            elements = st.floats(-1e4, 1e4, width=dtype.itemsize * 8)
    return hnp.arrays(dtype, shape, elements=elements)


def grey_or_stack_shapes():
    return st.one_of(
        st.tuples(SIDE, SIDE),
        st.tuples(SIDE, SIDE, st.integers(1, 5)),
        st.tuples(st.integers(1, 3), SIDE, SIDE),
    )


@st.composite
def arrays_of_any_shape(draw):
    return draw(arrays(draw(dtypes()), draw(grey_or_stack_shapes())))


def scratch_file(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix="fuzz_")) / name


@FUZZ
@given(array=arrays_of_any_shape())
def test_any_tiff_reads_as_2d_or_raises_the_documented_error(array):
    path = scratch_file("random.tif")
    tifffile.imwrite(path, array)
    try:
        micrograph = read_micrograph(path)
    except MicrographReadError as error:
        assert error.path == str(path) and "\n" not in str(error)
        return
    assert micrograph.array.ndim == 2
    if array.ndim == 2:
        np.testing.assert_array_equal(micrograph.array, array)  # grey data pass through unchanged
    assert micrograph.meta["source_max"] > 0


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["L", "I;16", "RGB", "RGBA"]), height=SIDE, width=SIDE)
def test_any_png_reads_as_2d_grey(data, mode, height, width):
    dtype, channels = {"L": (np.uint8, 0), "I;16": (np.uint16, 0), "RGB": (np.uint8, 3), "RGBA": (np.uint8, 4)}[mode]
    shape = (height, width, channels) if channels else (height, width)
    array = data.draw(hnp.arrays(dtype, shape))
    path = scratch_file("random.png")
    Image.fromarray(array).save(path)
    micrograph = read_micrograph(path)
    assert micrograph.array.shape == (height, width)
    if not channels:
        np.testing.assert_array_equal(micrograph.array, array)


@FUZZ
@given(
    magic=st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n", b"BM"]),
    tail=st.binary(max_size=200),
    suffix=st.sampled_from([".tif", ".tiff", ".png", ".jpg", ".bmp"]),
)
def test_random_bytes_raise_the_documented_error(magic, tail, suffix):
    path = scratch_file(f"garbage{suffix}")
    path.write_bytes(magic + tail)
    try:
        read_micrograph(path)
    except MicrographReadError as error:
        assert error.path == str(path) and "\n" not in str(error)


@FUZZ
@given(data=st.data(), dtype=dtypes(), shape=st.tuples(st.integers(1, 60), SIDE))
def test_detect_data_bar_on_any_image(data, dtype, shape):
    image = data.draw(arrays(dtype, shape))
    rows = detect_data_bar(image)
    assert isinstance(rows, int)
    assert 0 <= rows <= int(image.shape[0] * MAX_BAR_FRACTION)


@FUZZ
@given(
    values=hnp.arrays(np.float32, st.tuples(st.just(1), SIDE, SIDE), elements=st.floats(0, 65535, width=32)),
    source_max=st.sampled_from([1.0, 255.0, 65535.0]),
)
def test_binarize_mask_gives_zeros_and_ones(values, source_max):
    mask = MetaTensor(torch.from_numpy(values), meta={"source_max": source_max, "filename_or_obj": "m.tif"})
    binary = BinarizeMask()(mask)
    assert binary.shape == mask.shape and binary.dtype == torch.float32
    assert set(torch.unique(binary).tolist()) <= {0.0, 1.0}
    if not set(np.unique(values).tolist()) <= {0.0, 1.0}:  # not a 0/1 label mask: half of the full scale
        np.testing.assert_array_equal(binary.numpy(), values > source_max / 2)


@st.composite
def micrograph_files(draw):
    """A random 2-D image (any dtype, finite) written as TIFF, and a mask of its shape or, rarely, not."""
    dtype = draw(dtypes())
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    image = draw(arrays(dtype, (height, width), finite=True))
    mask_shape = draw(st.sampled_from([(height, width)] * 4 + [(height + 1, width)]))
    mask = draw(hnp.arrays(np.uint8, mask_shape, elements=st.sampled_from([0, 255])))
    folder = Path(tempfile.mkdtemp(prefix="fuzz_"))
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "mask.tif", mask)
    return {"image": str(folder / "image.tif"), "label": str(folder / "mask.tif")}, (height, width), mask_shape


def documented(error: BaseException) -> bool:
    return isinstance(find_user_error(error), MicrographReadError)


@FUZZ
@given(files=micrograph_files(), intensity=st.sampled_from(["zscore", "unit", "none"]))
def test_inference_and_validation_pipelines_on_random_micrographs(files, intensity):
    paths, (height, width), mask_shape = files
    image = inference_transforms(intensity=intensity)({"image": paths["image"]})["image"]
    assert image.shape[0] == 1 and image.shape[2] == width and image.shape[1] <= height  # data bar cropped
    assert torch.isfinite(image).all()
    try:
        pair = validation_transforms(intensity=intensity)(paths)
    except Exception as error:  # noqa: BLE001 (the documented errors are checked below)
        assert documented(error) and mask_shape != (height, width), error
        return
    assert pair["label"].shape == pair["image"].shape
    assert set(torch.unique(pair["label"]).tolist()) <= {0.0, 1.0}


@pytest.mark.slow
@FUZZ
@given(files=micrograph_files())
def test_training_pipeline_on_random_micrographs(files):
    paths, (height, width), mask_shape = files
    try:
        crops = train_transforms(roi_size=(16, 16), num_samples=2)(paths)
    except Exception as error:  # noqa: BLE001
        assert documented(error) and mask_shape != (height, width), error
        return
    assert len(crops) == 2
    for crop in crops:
        assert tuple(crop["image"].shape) == (1, 16, 16) and tuple(crop["label"].shape) == (1, 16, 16)
        assert torch.isfinite(crop["image"]).all()
