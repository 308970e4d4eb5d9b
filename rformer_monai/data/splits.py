"""K-fold splits by image (never by tile), reproducible from a seed, as MONAI datalists."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist

FOLD_KEY = "fold"
DATALIST_KEY = "training"


def assign_folds(pairs: list[dict[str, str]], num_folds: int = 5, seed: int = 0) -> list[dict]:
    """Give each image a ``"fold"`` in ``0..num_folds-1``: a seeded shuffle of the images sorted by path,
    dealt round-robin, so fold sizes differ by at most one and the split is the same on every machine.

    Args:
        pairs: the datalist (``{"image": ..., "label": ...}`` dicts).
        num_folds: number of folds, at least 2 and at most the number of images.
        seed: the shuffle's seed.
    """
    if not 2 <= num_folds <= len(pairs):
        raise ValueError(f"num_folds must be between 2 and the number of images ({len(pairs)}), got {num_folds}.")
    ordered = sorted(pairs, key=lambda item: item["image"])
    order = np.random.default_rng(seed).permutation(len(ordered))
    return [{**ordered[index], FOLD_KEY: int(rank % num_folds)} for rank, index in enumerate(order)]


def split_fold(datalist: list[dict], fold: int) -> tuple[list[dict], list[dict]]:
    """``(training, validation)``: the validation part is the images whose ``"fold"`` equals ``fold``."""
    folds = sorted({item[FOLD_KEY] for item in datalist})
    if fold not in folds:
        raise ValueError(f"fold must be one of {folds}, got {fold}.")
    training = [item for item in datalist if item[FOLD_KEY] != fold]
    validation = [item for item in datalist if item[FOLD_KEY] == fold]
    return training, validation


def write_datalist(path: str | os.PathLike, datalist: list[dict]) -> Path:
    """Write a MONAI (Decathlon-style) datalist JSON ``{"training": [...]}`` with the ``fold`` field."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({DATALIST_KEY: datalist}, indent=2))
    return path


def read_datalist(path: str | os.PathLike) -> list[dict]:
    """Read a datalist written by :func:`write_datalist` (MONAI's loader: relative paths resolve to its folder)."""
    return load_decathlon_datalist(path, is_segmentation=True, data_list_key=DATALIST_KEY)
