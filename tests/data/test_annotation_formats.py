"""The annotations users have: masks of the image's size or cropped above the data bar, 0/1, 0/255 or instance
label images, named like the image or with _m/_mask/_seg; every problem of a dataset listed at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from rformer_monai.data import DatasetProblemsError, labelled_dataset
from rformer_monai.transforms import validation_transforms
from rformer_monai.transforms.array import (
    BinarizeMask,
    is_instance_label_image,
    unannotated_bottom_rows,
)
from rformer_monai.workflows.errors import install_error_reporting

BAR_ROWS = 12  # a bright data bar under a 64 x 80 image
HEIGHT, WIDTH = 64, 80


def micrograph_with_bar() -> np.ndarray:
    """A dark grainy micrograph with two bright squares and a uniform bright data bar of BAR_ROWS rows at the bottom."""
    image = np.random.default_rng(0).integers(20, 60, (HEIGHT, WIDTH)).astype(np.uint8)  # a grainy film
    image[10:20, 10:20] = 200
    image[30:40, 40:52] = 200
    image[-BAR_ROWS:] = 255
    image[-BAR_ROWS + 3 : -3, 5:40] = 0  # the bar's text
    return image


def true_mask(height: int = HEIGHT) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:20, 10:20] = 255
    mask[30:40, 40:52] = 255
    return mask[:height]


def write_pair(root: Path, name: str, image: np.ndarray, mask: np.ndarray | None, mask_name: str | None = None) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(root / "images" / f"{name}.tif", image)
    if mask is not None:
        tifffile.imwrite(root / "masks" / (mask_name or f"{name}_mask.tif"), mask)


@pytest.mark.parametrize("mask_rows", [HEIGHT, HEIGHT - BAR_ROWS], ids=["full-size", "cropped-above-the-bar"])
def test_full_size_and_cropped_masks_give_the_same_training_pair(tmp_path, mask_rows):
    write_pair(tmp_path, "a", micrograph_with_bar(), true_mask(mask_rows))
    (pair,) = labelled_dataset(tmp_path)
    loaded = validation_transforms(crop_bottom=None)(pair)
    assert loaded["image"].shape == loaded["label"].shape == (1, HEIGHT - BAR_ROWS, WIDTH)
    expected = true_mask(HEIGHT - BAR_ROWS) > 0
    np.testing.assert_array_equal(loaded["label"][0].numpy() > 0, expected)


def test_a_cropped_mask_crops_its_image_even_where_the_bar_is_not_detected(tmp_path):
    write_pair(tmp_path, "a", micrograph_with_bar(), true_mask(HEIGHT - BAR_ROWS))
    (pair,) = labelled_dataset(tmp_path)
    loaded = validation_transforms(crop_bottom=0)(pair)  # "no data bar", yet the mask stops above it
    assert loaded["image"].shape == loaded["label"].shape == (1, HEIGHT - BAR_ROWS, WIDTH)


def test_unannotated_rows_of_mask_shapes():
    assert unannotated_bottom_rows((768, 1024), (768, 1024)) == 0
    assert unannotated_bottom_rows((768, 1024), (712, 1024)) == 56
    assert unannotated_bottom_rows((768, 1024), (712, 1000)) is None  # another width
    assert unannotated_bottom_rows((768, 1024), (800, 1024)) is None  # taller than the image
    assert unannotated_bottom_rows((768, 1024), (300, 1024)) is None  # far more than a data bar


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_instance_label_images_become_masks_with_lines_between_touching_particles(tmp_path, dtype):
    labels = np.zeros((HEIGHT, WIDTH), dtype)
    labels[10:20, 10:20] = 1
    labels[10:20, 20:30] = 2  # touches particle 1
    labels[30:40, 40:52] = 3
    write_pair(tmp_path, "a", micrograph_with_bar(), labels)
    (pair,) = labelled_dataset(tmp_path)
    mask = validation_transforms(crop_bottom=0)(pair)["label"][0].numpy()
    assert mask[10:20, 10:19].all() and mask[10:20, 20:30].all() and mask[30:40, 40:52].all()
    assert not mask[10:20, 19].any()  # the one-pixel line that keeps the touching pair apart
    assert mask.sum() == (labels > 0).sum() - 10


@pytest.mark.parametrize(
    ("values", "scale"),
    [((0, 1), 255), ((0, 255), 255), ((0, 1), 65535), ((0, 65535), 65535)],
    ids=["0/1 8-bit", "0/255", "0/1 16-bit", "0/65535"],
)
def test_binary_masks_of_any_scale(values, scale):
    mask = np.zeros((1, 8, 8), np.float32)
    mask[0, 2:5, 2:5] = values[1]
    from monai.data import MetaTensor

    binary = BinarizeMask()(MetaTensor(torch.as_tensor(mask), meta={"source_max": float(scale)}))
    assert int(binary.sum()) == 9


def test_grey_level_masks_are_not_taken_for_label_images():
    anti_aliased = np.zeros((32, 32), np.uint8)
    anti_aliased[8:24, 8:24] = 255
    anti_aliased[7, 8:24] = anti_aliased[24, 8:24] = 128  # a soft edge
    assert not is_instance_label_image(anti_aliased, 255.0)
    noisy = np.where(anti_aliased > 0, 240 + np.arange(32 * 32).reshape(32, 32) % 16, 0).astype(np.uint8)
    assert not is_instance_label_image(noisy, 255.0)
    labels = np.zeros((32, 32), np.uint8)
    labels[2:10, 2:10], labels[2:10, 10:18], labels[20:30, 20:30] = 1, 2, 3
    assert is_instance_label_image(labels, 255.0)


@pytest.mark.parametrize("mask_name", ["a.tif", "a_m.tif", "a_mask.tif", "a_seg.tif"])
def test_masks_named_like_the_image_or_with_a_suffix(tmp_path, mask_name):
    write_pair(tmp_path, "a", micrograph_with_bar(), true_mask(), mask_name=mask_name)
    assert labelled_dataset(tmp_path) == [
        {"image": str(tmp_path / "images" / "a.tif"), "label": str(tmp_path / "masks" / mask_name)}
    ]


def test_every_problem_of_a_dataset_is_listed_at_once(tmp_path, capsys):
    write_pair(tmp_path, "good", micrograph_with_bar(), true_mask())
    write_pair(tmp_path, "no_mask", micrograph_with_bar(), None)
    write_pair(tmp_path, "empty", micrograph_with_bar(), np.zeros((HEIGHT, WIDTH), np.uint8))
    write_pair(tmp_path, "wrong_shape", micrograph_with_bar(), np.full((HEIGHT, WIDTH - 8), 255, np.uint8))
    write_pair(tmp_path, "unreadable", micrograph_with_bar(), None)
    (tmp_path / "masks" / "unreadable_m.tif").write_bytes(b"not a tiff")
    tifffile.imwrite(tmp_path / "masks" / "orphan_mask.tif", true_mask())
    with pytest.raises(DatasetProblemsError) as error:
        labelled_dataset(tmp_path)
    masks, images = tmp_path / "masks", tmp_path / "images"
    problems = error.value.problems
    assert len(problems) == 5, problems
    expected_starts = [
        f"{masks / 'orphan_mask.tif'}: mask without an image",
        f"{images / 'no_mask.tif'}: no mask in",
        f"{masks / 'empty_mask.tif'}: an empty mask",
        f"{masks / 'unreadable_m.tif'}: ",
        f"{masks / 'wrong_shape_mask.tif'}: shape (64, 72) but its image",
    ]
    for start in expected_starts:
        assert sum(problem.startswith(start) for problem in problems) == 1, (start, problems)
    assert not any("good" in problem for problem in problems)

    # on the command line: a header and one line per problem, each naming its file
    install_error_reporting(tmp_path / "log")
    import sys

    sys.excepthook(type(error.value), error.value, error.value.__traceback__)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"error: {tmp_path}: 5 problems in the dataset")
    assert [line.strip().split(": ")[0] for line in lines[1:]] == [problem.split(": ")[0] for problem in problems]
