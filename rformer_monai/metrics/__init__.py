"""Segmentation metrics: pixel level (Dice, IoU, precision, recall, accuracy, F1, AUC) and reports, and
instance level (per particle, against 4-connected ground-truth particles)."""

from rformer_monai.metrics.handlers import SegmentationReportHandler
from rformer_monai.metrics.instances import (
    DEFAULT_IOU_THRESHOLD,
    INSTANCE_SCORE_NAMES,
    InstanceMatches,
    instance_scores,
    match_instances,
    pool_matches,
    recall_by_size,
    scores_from_matches,
)
from rformer_monai.metrics.segmentation import (
    AUC_HISTOGRAM_BINS,
    CSV_COLUMNS,
    DEFAULT_THRESHOLD,
    EXACT_AUC_MAX_PIXELS,
    SCORE_NAMES,
    ConfusionCounts,
    SegmentationReport,
    binary_confusion,
    classification_report_from_confusion,
    plot_confusion_matrix,
    roc_auc,
    scores_from_confusion,
)

__all__ = [
    "AUC_HISTOGRAM_BINS",
    "CSV_COLUMNS",
    "DEFAULT_IOU_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "EXACT_AUC_MAX_PIXELS",
    "INSTANCE_SCORE_NAMES",
    "SCORE_NAMES",
    "ConfusionCounts",
    "InstanceMatches",
    "SegmentationReport",
    "SegmentationReportHandler",
    "binary_confusion",
    "classification_report_from_confusion",
    "instance_scores",
    "match_instances",
    "plot_confusion_matrix",
    "pool_matches",
    "recall_by_size",
    "roc_auc",
    "scores_from_confusion",
    "scores_from_matches",
]
