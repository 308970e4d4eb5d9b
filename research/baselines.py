"""Classical baselines on the same folds and with the same report as the networks: per-image Otsu (with
hole filling and small-object removal) and one fixed grey-level threshold chosen on the training folds."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

from rformer_monai.data.sources import load_fold
from rformer_monai.metrics.segmentation import SegmentationReport
from rformer_monai.transforms.pipelines import validation_transforms

logger = logging.getLogger(__name__)

BASELINES = ("otsu", "fixed_threshold")
# Otsu clean-up: objects smaller than this are noise (a particle of the BAM data is ~30 px across)
MIN_OBJECT_SIZE_PX = 30
GREY_LEVELS = 256


def otsu_mask(image: np.ndarray, min_object_size_px: int = MIN_OBJECT_SIZE_PX) -> np.ndarray:
    """Per-image Otsu threshold, holes filled, objects below ``min_object_size_px`` removed."""
    mask = image > threshold_otsu(image)
    mask = ndimage.binary_fill_holes(mask)
    return remove_small_objects(mask, max_size=min_object_size_px - 1)


def best_fixed_threshold(images: list[np.ndarray], masks: list[np.ndarray], levels: int = GREY_LEVELS) -> float:
    """The grey level whose ``image >= level`` gives the highest pooled Dice over the given images.

    Every candidate level is scored at once from the particle and background grey-level histograms.
    """
    low = min(float(image.min()) for image in images)
    high = max(float(image.max()) for image in images)
    edges = np.linspace(low, high, levels + 1)
    particle = sum(np.histogram(i[m], bins=edges)[0] for i, m in zip(images, masks))
    background = sum(np.histogram(i[~m], bins=edges)[0] for i, m in zip(images, masks))
    # predicting "particle" above edge k: counts of the bins from k on
    true_positive = np.cumsum(particle[::-1])[::-1]
    false_positive = np.cumsum(background[::-1])[::-1]
    false_negative = particle.sum() - true_positive
    dice = 2 * true_positive / np.maximum(2 * true_positive + false_positive + false_negative, 1)
    best = int(np.argmax(dice))
    logger.info("fixed threshold %.1f (training Dice %.4f)", edges[best], dice[best])
    return float(edges[best])


def _load(pairs: list[dict]) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    transforms = validation_transforms(intensity="none")
    names, images, masks = [], [], []
    for pair in pairs:
        item = transforms(pair)
        names.append(Path(pair["image"]).stem)
        images.append(item["image"].numpy()[0])
        masks.append(item["label"].numpy()[0] > 0)
    return names, images, masks


def evaluate_baseline_fold(
    method: str, dataset_dir: str, fold_dir: Path, fold: int, num_folds: int = 5, seed: int = 0
) -> SegmentationReport:
    """Score a classical baseline on one fold's held-out images (data bar excluded) and write its report."""
    if method not in BASELINES:
        raise ValueError(f"method must be one of {BASELINES}, got {method!r}.")
    datalists = load_fold(dataset_dir, fold_dir / "synthetic", fold=fold, num_folds=num_folds, seed=seed)
    names, images, masks = _load(datalists["validation"])
    report = SegmentationReport()
    if method == "otsu":
        for name, image, mask in zip(names, images, masks):
            report.add(name, otsu_mask(image).astype(np.float32), mask)
    else:
        _, train_images, train_masks = _load(datalists["training"])
        level = best_fixed_threshold(train_images, train_masks)
        for name, image, mask in zip(names, images, masks):
            report.add(name, (image >= level).astype(np.float32), mask)
    report.write(fold_dir)
    return report
