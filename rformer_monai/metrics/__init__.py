"""Pixel-level segmentation metrics (Dice, IoU, precision, recall, accuracy, F1, AUC) and reports."""

from rformer_monai.metrics.handlers import SegmentationReportHandler
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
    roc_auc,
    scores_from_confusion,
)

__all__ = [
    "AUC_HISTOGRAM_BINS",
    "CSV_COLUMNS",
    "DEFAULT_THRESHOLD",
    "EXACT_AUC_MAX_PIXELS",
    "SCORE_NAMES",
    "ConfusionCounts",
    "SegmentationReport",
    "SegmentationReportHandler",
    "binary_confusion",
    "classification_report_from_confusion",
    "roc_auc",
    "scores_from_confusion",
]
