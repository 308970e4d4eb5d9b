"""Instance-level (per particle) evaluation of predicted particles against ground truth.

The ground truth follows the BAM convention: the 4-connected components of a mask are the
particles (:func:`rformer_monai.particles.labelling.label_particles`). A predicted and a true particle match when their
intersection over union (IoU) exceeds a threshold of at least 0.5; above 0.5 a particle can
overlap more than half of at most one other, so the matching is unique without any
assignment step (Kirillov et al., "Panoptic Segmentation", CVPR 2019).

Scores (:func:`scores_from_matches`, :func:`instance_scores`):

- ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)``
  of the detections; a zero denominator gives 1.0 when there is no error and 0.0 otherwise
  (the convention of :mod:`rformer_monai.metrics.segmentation`).
- ``sq`` (segmentation quality): mean IoU of the matched pairs; ``rq`` (recognition
  quality) = ``f1``; ``pq`` (panoptic quality) = ``sq * rq``.
- ``mean_iou``: mean over the true particles of their best IoU with any predicted particle
  (0 for a particle no prediction overlaps).
- ``count_error``: ``(predicted count - true count) / true count``.
- ``median_ecd_error``: relative error of the median equivalent circular diameter.
- ``ks_distance``: two-sample Kolmogorov-Smirnov statistic between the predicted and the
  true ECD distributions (``scipy.stats.ks_2samp``).
- ``fn_merged``: the missed true particles (of ``fn``) that were merged: more than half of the
  particle lies in one predicted particle that also holds more than half of another true one.
  A high share of merges says the separation of touching particles, not their detection, is what fails.
- ``fn_unsegmented``: the missed true particles (of ``fn``) of which less than half lies in any
  predicted particle: not segmented at all (too faint for the threshold, or removed as specks). The
  rest of ``fn`` were found with the wrong shape or split.

:func:`recall_by_size` splits the recall by the size of the true particles: which sizes are lost,
and how many of the lost ones were merged or not segmented.

``count_error`` and ``median_ecd_error`` are NaN where undefined (no true particle, or one side
empty for the median), ``ks_distance`` is 1 where one side is empty; both sides empty gives 0 error
and distance. Matches of several images pool with ``+`` or
:func:`pool_matches`, so that scores over a data set count every particle once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
from scipy.stats import ks_2samp

from rformer_monai.particles.labelling import equivalent_circular_diameter, label_particles

__all__ = [
    "DEFAULT_IOU_THRESHOLD",
    "INSTANCE_SCORE_NAMES",
    "InstanceMatches",
    "instance_scores",
    "match_instances",
    "pool_matches",
    "recall_by_size",
    "scores_from_matches",
]

DEFAULT_IOU_THRESHOLD = 0.5
"""A predicted and a true particle match when their IoU is above this."""
MIN_UNIQUE_IOU_THRESHOLD = 0.5
"""Thresholds below this would let a particle match several others (not supported)."""
DEFAULT_SIZE_CLASSES = 4
"""Size classes of :func:`recall_by_size`: the quarters of the true particles by ECD."""

INSTANCE_SCORE_NAMES: tuple[str, ...] = (
    "f1",
    "precision",
    "recall",
    "pq",
    "sq",
    "rq",
    "mean_iou",
    "count_error",
    "median_ecd_error",
    "ks_distance",
    "tp",
    "fp",
    "fn",
    "fn_merged",
    "fn_unsegmented",
    "pred_count",
    "true_count",
)
"""Keys of :func:`scores_from_matches`, in report order."""

@dataclasses.dataclass(frozen=True)
class InstanceMatches:
    """The outcome of matching predicted to true particles.

    Attributes:
        tp: matched pairs (IoU above the threshold).
        fp: predicted particles without a match.
        fn: true particles without a match.
        matched_iou: (tp,) IoU of each matched pair.
        best_true_iou: (true count,) best IoU of each true particle with any prediction.
        pred_ecd: (predicted count,) equivalent circular diameters of the predictions.
        true_ecd: (true count,) equivalent circular diameters of the true particles.
        true_merged: (true count,) whether more than half of each true particle lies in a predicted
            particle that also holds more than half of another true particle.
        true_unsegmented: (true count,) whether less than half of each true particle lies in predicted
            particles.
        iou_threshold: the matching threshold.
    """

    tp: int
    fp: int
    fn: int
    matched_iou: np.ndarray
    best_true_iou: np.ndarray
    pred_ecd: np.ndarray
    true_ecd: np.ndarray
    true_merged: np.ndarray
    true_unsegmented: np.ndarray
    iou_threshold: float = DEFAULT_IOU_THRESHOLD

    def __add__(self, other: object) -> InstanceMatches:
        if not isinstance(other, InstanceMatches):
            return NotImplemented
        if other.iou_threshold != self.iou_threshold:
            raise ValueError(
                f"iou_threshold must agree to pool matches, got {self.iou_threshold} and {other.iou_threshold}."
            )
        return InstanceMatches(
            tp=self.tp + other.tp,
            fp=self.fp + other.fp,
            fn=self.fn + other.fn,
            matched_iou=np.concatenate([self.matched_iou, other.matched_iou]),
            best_true_iou=np.concatenate([self.best_true_iou, other.best_true_iou]),
            pred_ecd=np.concatenate([self.pred_ecd, other.pred_ecd]),
            true_ecd=np.concatenate([self.true_ecd, other.true_ecd]),
            true_merged=np.concatenate([self.true_merged, other.true_merged]),
            true_unsegmented=np.concatenate([self.true_unsegmented, other.true_unsegmented]),
            iou_threshold=self.iou_threshold,
        )

    @property
    def pred_count(self) -> int:
        """Number of predicted particles."""
        return self.tp + self.fp

    @property
    def true_count(self) -> int:
        """Number of true particles."""
        return self.tp + self.fn

    @property
    def true_found(self) -> np.ndarray:
        """(true count,) whether each true particle is matched."""
        return self.best_true_iou > self.iou_threshold


def _as_instances(labels: np.ndarray, argument: str) -> np.ndarray:
    """Integer labels as given; a bool mask is labelled by its 4-connected components."""
    labels = np.asarray(labels)
    if labels.dtype == np.bool_:
        return label_particles(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{argument} must hold integer labels (0 background) or be a bool mask, got dtype {labels.dtype}."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"{argument} must be non-negative, got minimum {labels.min()}.")
    return labels


def _equivalent_diameters(areas: np.ndarray, pixel_size_nm: float | None) -> np.ndarray:
    scale = 1.0 if pixel_size_nm is None else float(pixel_size_nm)
    return equivalent_circular_diameter(areas) * scale


def match_instances(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    pixel_size_nm: float | None = None,
) -> InstanceMatches:
    """Match predicted to true particles by IoU (unique for thresholds >= 0.5).

    Args:
        pred_labels: (H, W) integer instance labels of the prediction, 0 background (a bool
            mask is labelled by its 4-connected components).
        true_labels: (H, W) integer instance labels of the ground truth, likewise.
        iou_threshold: pairs with IoU above this match; in [0.5, 1).
        pixel_size_nm: scales the stored ECDs to nm; None keeps pixels.

    Returns:
        The matches, counts and per-particle IoUs and diameters.

    Raises:
        ValueError: on shapes that differ, non-integer labels or a threshold outside [0.5, 1).
    """
    if not MIN_UNIQUE_IOU_THRESHOLD <= float(iou_threshold) < 1.0:
        raise ValueError(f"iou_threshold must lie in [0.5, 1) for a unique matching, got {iou_threshold!r}.")
    if pixel_size_nm is not None and not (math.isfinite(float(pixel_size_nm)) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be a positive number or None, got {pixel_size_nm!r}.")
    pred = _as_instances(pred_labels, "pred_labels")
    true = _as_instances(true_labels, "true_labels")
    if pred.shape != true.shape:
        raise ValueError(
            "pred_labels and true_labels must have the same shape, "
            f"got {tuple(pred.shape)} and {tuple(true.shape)}."
        )
    # compact the labels to 0..N (index 0 is the background when present, handled below)
    pred_ids, pred_index = np.unique(pred.ravel(), return_inverse=True)
    true_ids, true_index = np.unique(true.ravel(), return_inverse=True)
    pred_offset = int(pred_ids.size > 0 and pred_ids[0] == 0)
    true_offset = int(true_ids.size > 0 and true_ids[0] == 0)
    pred_areas = np.bincount(pred_index, minlength=pred_ids.size)[pred_offset:]
    true_areas = np.bincount(true_index, minlength=true_ids.size)[true_offset:]
    pred_index = pred_index - pred_offset  # -1: background
    true_index = true_index - true_offset

    both = (pred_index >= 0) & (true_index >= 0)
    pair_keys, intersections = np.unique(
        true_index[both].astype(np.int64) * max(pred_areas.size, 1) + pred_index[both], return_counts=True
    )
    pair_true = pair_keys // max(pred_areas.size, 1)
    pair_pred = pair_keys % max(pred_areas.size, 1)
    ious = intersections / (true_areas[pair_true] + pred_areas[pair_pred] - intersections)

    best_true_iou = np.zeros(true_areas.size, dtype=np.float64)
    np.maximum.at(best_true_iou, pair_true, ious)
    # a predicted particle holding more than half of two or more true ones merged them
    holds_most = 2 * intersections > true_areas[pair_true]
    held_per_pred = np.bincount(pair_pred[holds_most], minlength=pred_areas.size)
    true_merged = np.zeros(true_areas.size, dtype=bool)
    true_merged[pair_true[holds_most & (held_per_pred[pair_pred] >= 2)]] = True
    covered = np.bincount(true_index[both], minlength=true_areas.size)
    matched = ious > float(iou_threshold)
    tp = int(matched.sum())
    return InstanceMatches(
        tp=tp,
        fp=int(pred_areas.size) - tp,
        fn=int(true_areas.size) - tp,
        matched_iou=ious[matched].astype(np.float64),
        best_true_iou=best_true_iou,
        pred_ecd=_equivalent_diameters(pred_areas, pixel_size_nm),
        true_ecd=_equivalent_diameters(true_areas, pixel_size_nm),
        true_merged=true_merged,
        true_unsegmented=2 * covered < true_areas,
        iou_threshold=float(iou_threshold),
    )


def pool_matches(matches: Iterable[InstanceMatches]) -> InstanceMatches:
    """Pool the matches of several images (counts summed, per-particle arrays joined).

    Args:
        matches: the per-image matches (one threshold).

    Returns:
        The pooled matches.

    Raises:
        ValueError: if ``matches`` is empty or mixes thresholds.
    """
    matches = list(matches)
    if not matches:
        raise ValueError("matches must hold at least one InstanceMatches, got none.")
    pooled = matches[0]
    for other in matches[1:]:
        pooled = pooled + other
    return pooled


def _ratio(numerator: float, denominator: float, error_free: bool) -> float:
    """``numerator / denominator``, or 1.0 (no error) / 0.0 when the denominator is 0."""
    if denominator == 0:
        return 1.0 if error_free else 0.0
    return numerator / denominator


def _relative_error(predicted: float, true: float, both_empty: bool) -> float:
    if both_empty:
        return 0.0
    if true == 0 or not math.isfinite(true) or not math.isfinite(predicted):
        return math.nan
    return (predicted - true) / true


def scores_from_matches(matches: InstanceMatches) -> dict[str, float | int]:
    """Detection, panoptic and size-distribution scores of (pooled) matches.

    Args:
        matches: from :func:`match_instances` or :func:`pool_matches`.

    Returns:
        The scores named in :data:`INSTANCE_SCORE_NAMES` (see the module docstring).
    """
    tp, fp, fn = matches.tp, matches.fp, matches.fn
    error_free = fp == 0 and fn == 0
    precision = _ratio(tp, tp + fp, error_free)
    recall = _ratio(tp, tp + fn, error_free)
    rq = _ratio(2 * tp, 2 * tp + fp + fn, error_free)
    sq = float(matches.matched_iou.mean()) if tp else (1.0 if error_free else 0.0)
    if matches.true_count:
        mean_iou = float(matches.best_true_iou.mean())
    else:
        mean_iou = 1.0 if matches.pred_count == 0 else 0.0
    both_empty = matches.pred_count == 0 and matches.true_count == 0
    median_pred = float(np.median(matches.pred_ecd)) if matches.pred_count else math.nan
    median_true = float(np.median(matches.true_ecd)) if matches.true_count else math.nan
    if both_empty:
        ks_distance = 0.0
    elif matches.pred_count == 0 or matches.true_count == 0:
        ks_distance = 1.0
    else:
        ks_distance = float(ks_2samp(matches.pred_ecd, matches.true_ecd).statistic)
    return {
        "f1": rq,
        "precision": precision,
        "recall": recall,
        "pq": sq * rq,
        "sq": sq,
        "rq": rq,
        "mean_iou": mean_iou,
        "count_error": _relative_error(matches.pred_count, matches.true_count, both_empty),
        "median_ecd_error": _relative_error(median_pred, median_true, both_empty),
        "ks_distance": ks_distance,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "fn_merged": int(np.count_nonzero(matches.true_merged & ~matches.true_found)),
        "fn_unsegmented": int(np.count_nonzero(matches.true_unsegmented & ~matches.true_found)),
        "pred_count": matches.pred_count,
        "true_count": matches.true_count,
    }


def recall_by_size(matches: InstanceMatches, classes: int = DEFAULT_SIZE_CLASSES) -> list[dict[str, float | int]]:
    """Recall of the true particles in size classes of equal count (quantiles of their ECD).

    A true particle is found when its best IoU with a prediction is above the matching threshold (its
    match is unique there, see the module docstring).

    Args:
        matches: from :func:`match_instances` or :func:`pool_matches`.
        classes: number of classes; fewer where ECDs repeat at class edges.

    Returns:
        One row per class, smallest first: ``ecd_min`` and ``ecd_max`` (in the matches' unit), ``true_count``,
        ``found``, ``recall``, ``missed_merged`` (missed ones merged with a neighbour, see ``fn_merged`` in
        the module docstring) and ``missed_unsegmented`` (missed ones mostly outside every predicted particle,
        see ``fn_unsegmented``); no rows without true particles.
    """
    if classes < 1:
        raise ValueError(f"classes must be at least 1, got {classes}.")
    if matches.true_count == 0:
        return []
    found = matches.true_found
    missed_merged = matches.true_merged & ~found
    missed_unsegmented = matches.true_unsegmented & ~found
    edges = np.unique(np.quantile(matches.true_ecd, np.linspace(0.0, 1.0, classes + 1)))
    # class i holds ECDs in [edges[i], edges[i + 1]), the last one its upper edge too
    class_of = np.clip(np.searchsorted(edges, matches.true_ecd, side="right") - 1, 0, max(edges.size - 2, 0))
    rows = []
    for index in np.unique(class_of):
        members = class_of == index
        rows.append({
            "ecd_min": float(matches.true_ecd[members].min()),
            "ecd_max": float(matches.true_ecd[members].max()),
            "true_count": int(members.sum()),
            "found": int(found[members].sum()),
            "recall": float(found[members].mean()),
            "missed_merged": int(missed_merged[members].sum()),
            "missed_unsegmented": int(missed_unsegmented[members].sum()),
        })
    return rows


def instance_scores(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
) -> dict[str, float | int]:
    """Instance scores of one image: F1, precision, recall, PQ, mean IoU and size errors.

    Args:
        pred_labels: (H, W) predicted instance labels (or a bool mask, see :func:`match_instances`).
        true_labels: (H, W) true instance labels, e.g. ``label_particles(true_mask)``.
        iou_threshold: pairs with IoU above this match; in [0.5, 1).

    Returns:
        The scores named in :data:`INSTANCE_SCORE_NAMES`.
    """
    return scores_from_matches(match_instances(pred_labels, true_labels, iou_threshold))
