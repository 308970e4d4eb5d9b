"""Datasets: discovery of image/mask pairs, k-fold splits, the synthetic SEM generator."""

from rformer_monai.data.checks import check_pair, labelled_dataset
from rformer_monai.data.discovery import (
    DatasetLayoutError,
    DatasetProblemsError,
    discover_pairs,
    find_micrographs,
    find_pairs,
)
from rformer_monai.data.sources import inference_datalist, labelled_pairs, load_fold
from rformer_monai.data.splits import (
    assign_folds,
    read_datalist,
    split_fold,
    write_datalist,
)
from rformer_monai.data.synthetic import make_synthetic_dataset, render_micrograph

__all__ = [
    "DatasetLayoutError",
    "DatasetProblemsError",
    "assign_folds",
    "check_pair",
    "discover_pairs",
    "find_micrographs",
    "find_pairs",
    "inference_datalist",
    "labelled_dataset",
    "labelled_pairs",
    "load_fold",
    "make_synthetic_dataset",
    "read_datalist",
    "render_micrograph",
    "split_fold",
    "write_datalist",
]
