"""Tests for dataset discovery (plain and BAM layouts), k-fold splits, datalists and the bundle's data sources."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from dataset_helpers import write_labelled_dataset

from rformer_monai.data import sources
from rformer_monai.data.discovery import (
    BAM_IMAGE_DIR,
    BAM_MASK_DIR,
    DatasetLayoutError,
    dataset_layout,
    discover_pairs,
    find_micrographs,
)
from rformer_monai.data.sources import inference_datalist, labelled_pairs, load_fold
from rformer_monai.data.splits import (
    FOLD_KEY,
    assign_folds,
    read_datalist,
    split_fold,
    write_datalist,
)


def touch(path: Path) -> Path:
    """Discovery goes by file names only: empty files stand in for micrographs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def make_plain(root: Path, images: list[str], masks: list[str]) -> Path:
    for name in images:
        touch(root / "images" / name)
    for name in masks:
        touch(root / "masks" / name)
    return root


def datalist_of(count: int) -> list[dict[str, str]]:
    return [{"image": f"/data/images/img_{i:02d}.tif", "label": f"/data/masks/img_{i:02d}_m.tif"} for i in range(count)]


# ------------------------------------------------------------------------------------------
# discovery


def test_plain_layout_with_every_mask_suffix(tmp_path):
    root = make_plain(
        tmp_path,
        ["a.tif", "b.png", "c.tiff", "d.jpg", "notes.txt"],
        ["a_m.tif", "b_mask.png", "c_seg.tif", "d.tif", "readme.md"],
    )
    pairs = discover_pairs(root)
    assert pairs == [
        {"image": str(root / "images/a.tif"), "label": str(root / "masks/a_m.tif")},
        {"image": str(root / "images/b.png"), "label": str(root / "masks/b_mask.png")},
        {"image": str(root / "images/c.tiff"), "label": str(root / "masks/c_seg.tif")},
        {"image": str(root / "images/d.jpg"), "label": str(root / "masks/d.tif")},  # same stem, no suffix
    ]


def test_bam_layout(tmp_path):
    for stem in ("1908248", "1908250"):
        touch(tmp_path / BAM_IMAGE_DIR / f"{stem}.tif")
        touch(tmp_path / BAM_MASK_DIR / f"{stem}_m.tif")
    assert dataset_layout(tmp_path) == (tmp_path / BAM_IMAGE_DIR, tmp_path / BAM_MASK_DIR)
    pairs = discover_pairs(tmp_path)
    assert [Path(p["image"]).name for p in pairs] == ["1908248.tif", "1908250.tif"]
    assert [Path(p["label"]).name for p in pairs] == ["1908248_m.tif", "1908250_m.tif"]


def test_real_bam_dataset_pairs(bam_dataset_dir):
    pairs = discover_pairs(bam_dataset_dir)
    assert len(pairs) == 30
    for pair in pairs:
        assert Path(pair["label"]).name == Path(pair["image"]).stem + "_m.tif"


def test_images_without_masks_listed_for_inference_error_for_training(tmp_path):
    root = make_plain(tmp_path, ["a.tif", "b.tif", "c.tif"], ["b_m.tif"])
    pairs = discover_pairs(root, require_masks=False)
    assert pairs == [
        {"image": str(root / "images/a.tif")},
        {"image": str(root / "images/b.tif"), "label": str(root / "masks/b_m.tif")},
        {"image": str(root / "images/c.tif")},
    ]
    with pytest.raises(DatasetLayoutError, match="a.tif: no mask in") as error:
        discover_pairs(root)
    assert str(root / "images/a.tif") in str(error.value) and str(root / "images/c.tif") in str(error.value)
    assert "b.tif" not in str(error.value)


def test_masks_without_image_raise_naming_them(tmp_path):
    root = make_plain(tmp_path, ["a.tif"], ["a_m.tif", "x_m.tif", "y_mask.png"])
    for require_masks in (True, False):
        with pytest.raises(DatasetLayoutError, match="mask without an image") as error:
            discover_pairs(root, require_masks=require_masks)
        assert str(root / "masks/x_m.tif") in str(error.value) and str(root / "masks/y_mask.png") in str(error.value)


def test_two_masks_for_one_image_raise(tmp_path):
    root = make_plain(tmp_path, ["a.tif"], ["a_m.tif", "a_mask.tif"])
    with pytest.raises(DatasetLayoutError, match="a second mask for the image 'a'"):
        discover_pairs(root)


def test_missing_mask_folder(tmp_path):
    root = make_plain(tmp_path, ["a.tif", "b.tif"], [])
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{root / 'masks'}: mask folder missing")):
        discover_pairs(root)
    assert discover_pairs(root, require_masks=False) == [
        {"image": str(root / "images/a.tif")},
        {"image": str(root / "images/b.tif")},
    ]


def test_empty_image_folder(tmp_path):
    (tmp_path / "images").mkdir()
    touch(tmp_path / "images" / "notes.txt")
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{tmp_path / 'images'}: no images found")):
        discover_pairs(tmp_path)


def test_no_such_folder(tmp_path):
    missing = tmp_path / "absent"
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{missing}: no such folder")):
        discover_pairs(missing)
    with pytest.raises(DatasetLayoutError, match="no such folder"):
        find_micrographs(missing)


def test_folder_without_a_known_layout(tmp_path):
    touch(tmp_path / "pictures" / "a.tif")
    with pytest.raises(DatasetLayoutError, match="found neither 'images/'"):
        discover_pairs(tmp_path)


def test_find_micrographs_recursive_and_flat(tmp_path):
    top = touch(tmp_path / "b.TIF")
    nested = touch(tmp_path / "sub" / "a.png")
    touch(tmp_path / "sub" / "c.txt")
    assert find_micrographs(tmp_path) == sorted([top, nested])
    assert find_micrographs(tmp_path, recursive=False) == [top]


# ------------------------------------------------------------------------------------------
# folds


@pytest.mark.parametrize("num_images, num_folds", [(23, 5), (30, 5), (10, 3), (7, 7), (5, 2)])
def test_assign_folds_balanced_and_complete(num_images, num_folds):
    pairs = datalist_of(num_images)
    folded = assign_folds(pairs, num_folds=num_folds, seed=0)
    assert sorted(item["image"] for item in folded) == sorted(item["image"] for item in pairs)  # each once
    assert all({k: v for k, v in item.items() if k != FOLD_KEY} in pairs for item in folded)
    sizes = Counter(item[FOLD_KEY] for item in folded)
    assert set(sizes) == set(range(num_folds))
    assert max(sizes.values()) - min(sizes.values()) <= 1


def test_assign_folds_reproducible_and_order_independent():
    pairs = datalist_of(23)
    reference = {item["image"]: item[FOLD_KEY] for item in assign_folds(pairs, num_folds=5, seed=7)}
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    again = {item["image"]: item[FOLD_KEY] for item in assign_folds(pairs, num_folds=5, seed=7)}
    from_shuffled = {item["image"]: item[FOLD_KEY] for item in assign_folds(shuffled, num_folds=5, seed=7)}
    assert again == reference
    assert from_shuffled == reference


def test_assign_folds_different_seeds_differ():
    pairs = datalist_of(23)
    fold_sets = {
        seed: frozenset(
            frozenset(item["image"] for item in assign_folds(pairs, 5, seed) if item[FOLD_KEY] == fold)
            for fold in range(5)
        )
        for seed in (0, 1)
    }
    assert fold_sets[0] != fold_sets[1]


@pytest.mark.parametrize("num_folds", [1, 0, 6])
def test_assign_folds_bad_num_folds(num_folds):
    with pytest.raises(ValueError, match=r"num_folds must be between 2 and the number of images \(5\)"):
        assign_folds(datalist_of(5), num_folds=num_folds)


def test_split_fold_partitions_the_datalist():
    folded = assign_folds(datalist_of(11), num_folds=3, seed=0)
    seen = []
    for fold in range(3):
        training, validation = split_fold(folded, fold)
        assert len(training) + len(validation) == 11
        assert all(item[FOLD_KEY] == fold for item in validation)
        assert all(item[FOLD_KEY] != fold for item in training)
        seen.extend(item["image"] for item in validation)
    assert sorted(seen) == sorted(item["image"] for item in folded)  # every image validated exactly once


@pytest.mark.parametrize("fold", [3, -1])
def test_split_fold_bad_fold(fold):
    folded = assign_folds(datalist_of(6), num_folds=3, seed=0)
    with pytest.raises(ValueError, match=re.escape(f"fold must be one of [0, 1, 2], got {fold}")):
        split_fold(folded, fold)


def test_write_read_datalist_round_trip(tmp_path):
    folded = assign_folds(datalist_of(6), num_folds=3, seed=0)
    path = write_datalist(tmp_path / "nested" / "datalist.json", folded)
    assert path == tmp_path / "nested" / "datalist.json"
    assert json.loads(path.read_text()) == {"training": folded}
    assert read_datalist(path) == folded


def test_read_datalist_resolves_relative_paths(tmp_path):
    path = write_datalist(tmp_path / "datalist.json", [{"image": "images/a.tif", "label": "masks/a_m.tif", "fold": 0}])
    assert read_datalist(path) == [
        {"image": str(tmp_path / "images/a.tif"), "label": str(tmp_path / "masks/a_m.tif"), "fold": 0}
    ]


# ------------------------------------------------------------------------------------------
# bundle data sources


@pytest.fixture
def few_synthetic_images(monkeypatch):
    monkeypatch.setattr(sources, "SYNTHETIC_NUM_IMAGES", 6)


def test_load_fold_without_dataset_uses_synthetic_data(tmp_path, few_synthetic_images):
    split = load_fold(None, tmp_path / "synthetic", fold=1, num_folds=3, seed=0)
    assert len(split["training"]) == 4 and len(split["validation"]) == 2
    everything = split["training"] + split["validation"]
    assert len({item["image"] for item in everything}) == 6
    for item in everything:
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
        assert Path(item["image"]).is_relative_to(tmp_path / "synthetic")
    # cached: a second call reuses the files and gives the same split
    assert load_fold("", tmp_path / "synthetic", fold=1, num_folds=3, seed=0) == split


def test_load_fold_with_a_dataset_folder(tmp_path):
    root = write_labelled_dataset(tmp_path / "data", count=5, size=(32, 32))  # readable files: they are checked
    split = load_fold(root, tmp_path / "unused", fold=0, num_folds=5, seed=0)
    assert len(split["validation"]) == 1 and len(split["training"]) == 4
    assert not (tmp_path / "unused").exists()
    assert labelled_pairs(root, tmp_path / "unused") == discover_pairs(root)


def test_inference_datalist_recursive(tmp_path):
    files = [touch(tmp_path / "a.tif"), touch(tmp_path / "run1" / "b.png"), touch(tmp_path / "run1" / "x" / "c.jpeg")]
    touch(tmp_path / "run1" / "log.txt")
    assert inference_datalist(tmp_path) == [{"image": str(p)} for p in sorted(files)]


def test_inference_datalist_single_file(tmp_path):
    path = touch(tmp_path / "one.tif")
    assert inference_datalist(path) == [{"image": str(path)}]
    assert inference_datalist(str(path)) == [{"image": str(path)}]


def test_inference_datalist_without_micrographs(tmp_path):
    touch(tmp_path / "notes.txt")
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{tmp_path}: no micrographs found")):
        inference_datalist(tmp_path)
    with pytest.raises(DatasetLayoutError, match="no such folder"):
        inference_datalist(tmp_path / "absent")
