"""Datalists for the bundle's workflows: a real dataset folder, or the synthetic default where none is given."""

from __future__ import annotations

import logging
import os

from rformer_monai.data.checks import labelled_dataset
from rformer_monai.data.discovery import (
    DatasetLayoutError,
    find_micrographs,
)
from rformer_monai.data.splits import assign_folds, split_fold
from rformer_monai.data.synthetic import make_synthetic_dataset

logger = logging.getLogger(__name__)

SYNTHETIC_NUM_IMAGES = 24


def labelled_pairs(dataset_dir: str | os.PathLike | None, synthetic_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Image/mask pairs of ``dataset_dir``, every file checked first (all problems raised at once, see
    :func:`~rformer_monai.data.checks.labelled_dataset`); where it is ``None`` or empty, the synthetic dataset
    (generated once into ``synthetic_dir``, then reused)."""
    if dataset_dir:
        return labelled_dataset(dataset_dir)
    logger.info("no dataset_dir given: using the synthetic SEM dataset in %s", synthetic_dir)
    return make_synthetic_dataset(synthetic_dir, num_images=SYNTHETIC_NUM_IMAGES)


def load_fold(
    dataset_dir: str | os.PathLike | None,
    synthetic_dir: str | os.PathLike,
    fold: int = 0,
    num_folds: int = 5,
    seed: int = 0,
) -> dict[str, list[dict]]:
    """The training and validation datalists of one cross-validation fold (folds by image).

    Args:
        dataset_dir: a labelled dataset folder; ``None`` or ``""`` for the synthetic default.
        synthetic_dir: where the synthetic dataset is generated and cached.
        fold: the fold held out for validation.
        num_folds: number of folds.
        seed: the seed of the split.

    Returns:
        ``{"training": [...], "validation": [...]}``.
    """
    datalist = assign_folds(labelled_pairs(dataset_dir, synthetic_dir), num_folds=num_folds, seed=seed)
    training, validation = split_fold(datalist, fold)
    logger.info("fold %d of %d: %d training and %d validation images", fold, num_folds, len(training), len(validation))
    return {"training": training, "validation": validation}


def inference_datalist(input_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Every micrograph under ``input_dir`` (recursive) as ``[{"image": path}, ...]``; a single file is allowed
    (a broken symbolic link is listed, so that the run reports it)."""
    if os.path.isfile(input_dir) or (os.path.islink(input_dir) and not os.path.exists(input_dir)):
        return [{"image": str(input_dir)}]
    images = find_micrographs(input_dir)
    if not images:
        raise DatasetLayoutError(f"{input_dir}: no micrographs found (TIFF, PNG, JPEG or BMP, searched recursively).")
    return [{"image": str(path)} for path in images]
