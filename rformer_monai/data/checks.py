"""Checking a labelled dataset before training: every problem (missing or unreadable file, mask of another shape,
empty mask) found at once and reported in one error, one line per file."""

from __future__ import annotations

import logging
import os

import torch

from rformer_monai.data.discovery import DatasetProblemsError, find_pairs
from rformer_monai.transforms.array import (
    BinarizeMask,
    LoadMicrograph,
    unannotated_bottom_rows,
)
from rformer_monai.transforms.io import MicrographReadError

logger = logging.getLogger(__name__)

__all__ = ["check_pair", "labelled_dataset"]


def check_pair(image_path: str, mask_path: str, loader: LoadMicrograph | None = None) -> list[str]:
    """The problems of one image/mask pair, one line each naming the file: unreadable, a mask of another shape
    than its image's (a mask cropped to the rows above the data bar is fine), a mask without a particle pixel."""
    loader = loader or LoadMicrograph()
    arrays, problems = {}, []
    for path in (image_path, mask_path):
        try:
            arrays[path] = loader(path)
        except MicrographReadError as exc:  # its message names the file
            problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - any reader error is reported with its file
            problems.append(f"{path}: unreadable ({exc})")
    if problems:
        return problems
    image, mask = arrays[image_path], arrays[mask_path]
    rows = unannotated_bottom_rows(image.shape[1:], mask.shape[1:])
    if rows is None:
        return [
            (
                f"{mask_path}: shape {tuple(mask.shape[1:])} but its image {image_path} has shape "
                f"{tuple(image.shape[1:])} (a mask must have its image's size, or its width and the rows above the "
                "data bar)"
            )
        ]
    if rows:
        logger.info("%s: covers the %d rows above the data bar of its image", mask_path, mask.shape[1])
    if not bool(torch.as_tensor(BinarizeMask()(mask)).any()):
        return [f"{mask_path}: an empty mask (no particle pixel)"]
    return []


def labelled_dataset(dataset_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The image/mask pairs of ``dataset_dir`` (see :func:`~rformer_monai.data.discovery.find_pairs`), after
    every file is read and checked.

    Raises:
        DatasetLayoutError: no images or no mask folder.
        DatasetProblemsError: every problem found (image without a mask, mask without an image, two masks for
            one image, unreadable file, mask of another shape, empty mask), one line each naming the file.
    """
    pairs, problems = find_pairs(dataset_dir, require_masks=True)
    loader = LoadMicrograph()
    for pair in pairs:
        if "label" in pair:
            problems += check_pair(pair["image"], pair["label"], loader)
    if problems:
        raise DatasetProblemsError(dataset_dir, problems)
    logger.info("%s: %d image/mask pairs checked", dataset_dir, len(pairs))
    return pairs
