"""Finding image/mask pairs in a dataset folder: the published BAM layout or a plain images/ + masks/ folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rformer_monai.transforms.io import MICROGRAPH_SUFFIXES

logger = logging.getLogger(__name__)

# the BAM TiO2 dataset (doi:10.5281/zenodo.4563942) as published
BAM_IMAGE_DIR = Path("Datasets", "Electron Microscopy Images", "SEM")
BAM_MASK_DIR = Path("Datasets", "Electron Microscopy Image Masks", "TiO2_Masks_Manual_4connected")
PLAIN_IMAGE_DIR = Path("images")
PLAIN_MASK_DIR = Path("masks")
MASK_SUFFIXES = ("_m", "_mask", "_seg")


class DatasetLayoutError(ValueError):
    """A dataset folder does not hold what its layout requires; the message names the folder or files."""


class DatasetProblemsError(DatasetLayoutError):
    """Every problem found in a dataset, one line each naming its file (``problems``), raised at once.

    Args:
        dataset_dir: the dataset folder.
        problems: one line per problem, each starting with the file it concerns.
    """

    def __init__(self, dataset_dir: str | os.PathLike, problems: list[str]) -> None:
        self.problems = list(problems)
        self.header = (
            f"{dataset_dir}: {len(self.problems)} problem{'s' if len(self.problems) > 1 else ''} in the dataset, "
            "fix them and run again:"
        )
        super().__init__("\n".join([self.header, *(f"  {problem}" for problem in self.problems)]))


def require_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a ``Path`` if it is a readable folder.

    Raises:
        DatasetLayoutError: it does not exist, is a file, or cannot be listed (permissions).
    """
    folder = Path(folder)
    if folder.is_file():
        raise DatasetLayoutError(f"{folder}: is a file, not a folder")
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: no such folder")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DatasetLayoutError(f"{folder}: folder is not readable (check its permissions)")
    return folder


def _is_broken_link(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def find_micrographs(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """All micrograph files (TIFF, PNG, JPEG, BMP) under ``folder``, sorted by path.

    Symbolic links whose target is missing are listed too, so that reading them fails with a message (a
    batch run lists them in ``failed.csv``) instead of the file being left out without a word.
    """
    folder = require_folder(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in folder.glob(pattern)
        if (p.is_file() or _is_broken_link(p)) and p.suffix.lower() in MICROGRAPH_SUFFIXES
    )


def _mask_stem(mask: Path) -> str:
    stem = mask.stem
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def dataset_layout(dataset_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The image and mask folders of ``dataset_dir``: the BAM layout if present, else ``images/`` + ``masks/``."""
    root = require_folder(dataset_dir)
    for image_dir, mask_dir in ((BAM_IMAGE_DIR, BAM_MASK_DIR), (PLAIN_IMAGE_DIR, PLAIN_MASK_DIR)):
        if (root / image_dir).is_dir():
            return root / image_dir, root / mask_dir
    raise DatasetLayoutError(
        f"{root}: found neither '{PLAIN_IMAGE_DIR}/' (with '{PLAIN_MASK_DIR}/' beside it) nor the BAM layout "
        f"'{BAM_IMAGE_DIR}/'"
    )


def discover_pairs(dataset_dir: str | os.PathLike, require_masks: bool = True) -> list[dict[str, str]]:
    """Image/mask pairs of a dataset folder as a MONAI datalist, sorted by image name (see :func:`find_pairs`).

    Raises:
        DatasetLayoutError: no images or a missing mask folder.
        DatasetProblemsError: every mask without an image, image with two masks and (with ``require_masks``)
            image without a mask, one line each.
    """
    pairs, problems = find_pairs(dataset_dir, require_masks)
    if problems:
        raise DatasetProblemsError(dataset_dir, problems)
    return pairs


def find_pairs(dataset_dir: str | os.PathLike, require_masks: bool = True) -> tuple[list[dict[str, str]], list[str]]:
    """Image/mask pairs of a dataset folder as a MONAI datalist, sorted by image name.

    Masks match images by stem, with an optional ``_m``, ``_mask`` or ``_seg`` suffix.

    Args:
        dataset_dir: a folder in the BAM layout or with ``images/`` and ``masks/``.
        require_masks: raise when an image has no mask (training); otherwise such images are
            listed without a ``"label"`` (inference).

    Returns:
        ``([{"image": path, "label": path}, ...], problems)``: ``"label"`` absent for unlabelled images;
        ``problems`` one line per mask without an image, image with two masks and (with ``require_masks``)
        image without a mask, each naming the file.

    Raises:
        DatasetLayoutError: no images, or a missing mask folder (with ``require_masks``).
    """
    image_dir, mask_dir = dataset_layout(dataset_dir)
    images = find_micrographs(image_dir)
    if not images:
        raise DatasetLayoutError(f"{image_dir}: no images found (expected {', '.join(MICROGRAPH_SUFFIXES)})")
    if not mask_dir.is_dir():
        if require_masks:
            raise DatasetLayoutError(f"{mask_dir}: mask folder missing (needed for training and evaluation)")
        return [{"image": str(p)} for p in images], []
    problems: list[str] = []
    masks: dict[str, Path] = {}
    image_stems = {p.stem for p in images}
    for mask in find_micrographs(mask_dir):
        stem = mask.stem if mask.stem in image_stems else _mask_stem(mask)  # 'a_m' may be the image 'a_m' itself
        if stem in masks:
            problems.append(f"{mask}: a second mask for the image '{stem}' (the first: {masks[stem]})")
            continue
        masks[stem] = mask
    problems += [
        f"{masks[stem]}: mask without an image in {image_dir} (expected an image named '{stem}')"
        for stem in sorted(masks.keys() - image_stems)
    ]
    pairs: list[dict[str, str]] = []
    unlabelled: list[str] = []
    for image in images:
        if image.stem in masks:
            pairs.append({"image": str(image), "label": str(masks[image.stem])})
        else:
            unlabelled.append(str(image))
            pairs.append({"image": str(image)})
    if unlabelled and require_masks:
        problems += [
            f"{image}: no mask in {mask_dir} (expected one named like the image, or with {', '.join(MASK_SUFFIXES)})"
            for image in unlabelled
        ]
    elif unlabelled:
        logger.info("%d images without a mask, listed for inference only", len(unlabelled))
    return pairs, problems
