"""Pixel-level binary segmentation metrics as reported in the ResidualFormer paper.

Every function here is pure numpy (plus scikit-learn for AUC and the classification report).
Pixels are binary: ``1``/``True`` is particle (foreground), ``0``/``False`` is background.

Empty-case convention (used by :func:`scores_from_confusion`):
    A ratio whose denominator is zero is ``1.0`` when the image is error free
    (``fp == fn == 0``) and ``0.0`` otherwise. So an empty prediction on an empty target
    scores dice = iou = precision = recall = f1 = 1; predicting nothing where particles exist
    gives precision 0 (and recall 0); predicting particles on an empty target gives recall 0
    (and precision 0). Under this convention f1 (harmonic mean of precision and recall)
    equals dice for every confusion, not only the non-degenerate ones. No score is NaN,
    except ROC AUC, which is undefined (NaN, with a logged warning) when the target holds a
    single class.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import classification_report as sklearn_classification_report
from sklearn.metrics import roc_auc_score

logger = logging.getLogger(__name__)

__all__ = [
    "AUC_HISTOGRAM_BINS",
    "CLASS_NAMES",
    "CSV_COLUMNS",
    "DEFAULT_THRESHOLD",
    "EXACT_AUC_MAX_PIXELS",
    "SCORE_NAMES",
    "ConfusionCounts",
    "SegmentationReport",
    "binary_confusion",
    "classification_report_from_confusion",
    "plot_confusion_matrix",
    "roc_auc",
    "scores_from_confusion",
]

SCORE_NAMES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "accuracy", "f1")
"""Keys of :func:`scores_from_confusion`, in report order."""

COUNT_NAMES: tuple[str, ...] = ("tp", "fp", "fn", "tn")
"""Confusion count keys, in report order."""

CSV_COLUMNS: tuple[str, ...] = ("name", *SCORE_NAMES, "auc", *COUNT_NAMES)
"""Columns of ``metrics.csv``."""

CLASS_NAMES: tuple[str, str] = ("background", "particle")
"""Target names of the classification report, indexed by pixel class (0, 1)."""

DEFAULT_THRESHOLD: float = 0.5
"""Probability at or above which a pixel is predicted as particle (as MONAI ``AsDiscrete``)."""

AUC_HISTOGRAM_BINS: int = 10_000
"""Equal-width probability bins over [0, 1] per class, used for the pooled AUC of large sets."""

EXACT_AUC_MAX_PIXELS: int = 2**23
"""Up to this many pooled pixels (~8.4 M, ~75 MB kept) the pooled AUC is exact (sklearn)."""

PERCENT: float = 100.0
"""Fraction to percentage factor for the confusion-matrix plot."""

CONFUSION_FIGURE_SIZE_INCHES: tuple[float, float] = (4.5, 4.0)
TEXT_CONTRAST_FRACTION: float = 0.5
"""Cells whose row fraction is above this get white text on the dark colour map."""

METRICS_JSON_NAME: str = "metrics.json"
METRICS_CSV_NAME: str = "metrics.csv"
POOLED_ROW_NAME: str = "pooled"
"""Name of the final row of ``metrics.csv`` holding the pooled scores."""

_TIE_CREDIT: float = 0.5
"""Credit of a positive/negative pair with equal scores in the AUC (Mann-Whitney)."""
_POSITIVE_CLASS: int = 1
_NEGATIVE_CLASS: int = 0


@dataclasses.dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts of a binary confusion matrix.

    Attributes:
        tp: particle pixels predicted as particle.
        fp: background pixels predicted as particle.
        fn: particle pixels predicted as background.
        tn: background pixels predicted as background.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{field.name} must be a non-negative integer, got {value!r}.")
            object.__setattr__(self, field.name, int(value))

    def __add__(self, other: object) -> ConfusionCounts:
        if not isinstance(other, ConfusionCounts):
            return NotImplemented
        return ConfusionCounts(
            tp=self.tp + other.tp, fp=self.fp + other.fp, fn=self.fn + other.fn, tn=self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Number of pixels counted."""
        return self.tp + self.fp + self.fn + self.tn

    def as_dict(self) -> dict[str, int]:
        """Return the counts as ``{"tp": ..., "fp": ..., "fn": ..., "tn": ...}``."""
        return {name: getattr(self, name) for name in COUNT_NAMES}

    def matrix(self) -> list[list[int]]:
        """Return the sklearn-ordered confusion matrix ``[[tn, fp], [fn, tp]]`` (rows: truth)."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def _as_binary(array: np.ndarray, argument: str) -> np.ndarray:
    """Return ``array`` as a bool array, checking it holds only 0 and 1."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array
    if array.size and not np.isin(array, (0, 1)).all():
        found = np.unique(array)[:5].tolist()
        raise ValueError(f"{argument} must be binary (bool or 0/1), got values such as {found}.")
    return array.astype(bool)


def _check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
    return float(threshold)


def _check_same_shape(first: np.ndarray, second: np.ndarray, first_name: str, second_name: str) -> None:
    if first.shape != second.shape:
        raise ValueError(
            f"{first_name} and {second_name} must have the same shape, "
            f"got {first_name} {tuple(first.shape)} and {second_name} {tuple(second.shape)}."
        )


def binary_confusion(prediction: np.ndarray, target: np.ndarray) -> ConfusionCounts:
    """Count the binary confusion of a predicted mask against a target mask.

    Args:
        prediction: predicted mask, bool or 0/1, any shape.
        target: ground-truth mask, bool or 0/1, same shape as ``prediction``.

    Returns:
        The pixel counts tp, fp, fn, tn.

    Raises:
        ValueError: if the shapes differ or an array is not binary.
    """
    prediction = np.asarray(prediction)
    target = np.asarray(target)
    _check_same_shape(prediction, target, "prediction", "target")
    prediction = _as_binary(prediction, "prediction")
    target = _as_binary(target, "target")
    tp = int(np.count_nonzero(prediction & target))
    predicted = int(np.count_nonzero(prediction))
    actual = int(np.count_nonzero(target))
    fp = predicted - tp
    fn = actual - tp
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=int(prediction.size) - tp - fp - fn)


def _ratio(numerator: int, denominator: int, error_free: bool) -> float:
    """``numerator / denominator``, or the empty-case convention when the denominator is 0."""
    if denominator == 0:
        return 1.0 if error_free else 0.0
    return numerator / denominator


def scores_from_confusion(counts: ConfusionCounts) -> dict[str, float]:
    """Compute dice, iou, precision, recall, accuracy and f1 from confusion counts.

    A zero denominator gives 1.0 when ``fp == fn == 0`` and 0.0 otherwise (see the module
    docstring), so no score is NaN and f1 always equals dice.

    Args:
        counts: pixel confusion counts.

    Returns:
        ``{"dice", "iou", "precision", "recall", "accuracy", "f1"}`` as floats in [0, 1].
    """
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    error_free = fp == 0 and fn == 0
    precision = _ratio(tp, tp + fp, error_free)
    recall = _ratio(tp, tp + fn, error_free)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, error_free),
        "iou": _ratio(tp, tp + fp + fn, error_free),
        "precision": precision,
        "recall": recall,
        "accuracy": _ratio(tp + tn, counts.total, error_free),
        "f1": f1,
    }


def roc_auc(probability: np.ndarray, target: np.ndarray) -> float:
    """Area under the pixel ROC curve (sklearn ``roc_auc_score``).

    Args:
        probability: particle probability (or any score) per pixel, any shape.
        target: binary ground truth, same shape as ``probability``.

    Returns:
        The AUC, or NaN (with a logged warning) when ``target`` holds a single class.

    Raises:
        ValueError: if the shapes differ or ``target`` is not binary.
    """
    probability = np.asarray(probability)
    target = np.asarray(target)
    _check_same_shape(probability, target, "probability", "target")
    target = _as_binary(target, "target").ravel()
    positives = int(np.count_nonzero(target))
    if positives == 0 or positives == target.size:
        logger.warning("ROC AUC is undefined when the target holds a single class; returning NaN.")
        return math.nan
    return float(roc_auc_score(target, probability.ravel()))


def classification_report_from_confusion(counts: ConfusionCounts) -> dict[str, Any]:
    """sklearn classification report (``output_dict=True``) of a pixel confusion.

    Built from the 2x2 case with sample weights ``[tn, fp, fn, tp]``, target names
    ``background`` and ``particle``. Precision or recall with a zero denominator is 0.0 here
    (sklearn ``zero_division=0.0``), which differs from :func:`scores_from_confusion` only for
    a class absent from both prediction and target. Supports are returned as ints.

    Args:
        counts: pixel confusion counts; at least one pixel.

    Returns:
        Per-class precision, recall, f1-score and support, plus accuracy, macro and weighted
        averages.

    Raises:
        ValueError: if ``counts`` holds no pixel.
    """
    if counts.total == 0:
        raise ValueError(f"counts must hold at least one pixel, got {counts}.")
    report = sklearn_classification_report(
        [_NEGATIVE_CLASS, _NEGATIVE_CLASS, _POSITIVE_CLASS, _POSITIVE_CLASS],
        [_NEGATIVE_CLASS, _POSITIVE_CLASS, _NEGATIVE_CLASS, _POSITIVE_CLASS],
        labels=[_NEGATIVE_CLASS, _POSITIVE_CLASS],
        target_names=list(CLASS_NAMES),
        sample_weight=[counts.tn, counts.fp, counts.fn, counts.tp],
        output_dict=True,
        zero_division=0.0,
    )
    for entry in report.values():
        if isinstance(entry, dict) and "support" in entry:
            entry["support"] = int(round(entry["support"]))
    return report


def _histogram_auc(positive_histogram: np.ndarray, negative_histogram: np.ndarray) -> float:
    """AUC from per-class probability histograms; pairs sharing a bin count as ties (1/2)."""
    positives = int(positive_histogram.sum())
    negatives = int(negative_histogram.sum())
    if positives == 0 or negatives == 0:
        logger.warning("ROC AUC is undefined when the target holds a single class; returning NaN.")
        return math.nan
    positive = positive_histogram.astype(np.float64)
    negative = negative_histogram.astype(np.float64)
    negatives_below = np.cumsum(negative) - negative
    concordant = float(np.dot(positive, negatives_below))
    tied = float(np.dot(positive, negative))
    logger.debug("Histogram AUC: at most %.3g from the exact AUC.", _TIE_CREDIT * tied / (positives * negatives))
    return (concordant + _TIE_CREDIT * tied) / (positives * negatives)


def _json_safe(value: Any) -> Any:
    """Replace NaN floats by None (JSON null) recursively."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class SegmentationReport:
    """Accumulates per-image pixel metrics and pools them over a test set.

    Each :meth:`add` thresholds a probability map, stores the image's confusion counts, scores
    and AUC, and updates the pooled statistics. Pooled scores come from the summed confusion
    (micro average); ``mean``/``std`` are over images (population std, ``ddof=0``; NaN AUCs
    of single-class images are skipped).

    The pooled AUC is exact (sklearn on all pooled pixels) while the pooled pixel count is at
    most ``exact_auc_max_pixels``; beyond that the kept pixels are dropped and the AUC comes
    from per-class histograms of ``histogram_bins`` equal-width bins, where pairs that share
    a bin count as ties. ``pooled()["auc_method"]`` says which was used.

    Args:
        threshold: default probability at or above which a pixel is particle.
        exact_auc_max_pixels: pooled pixel count up to which the pooled AUC is exact.
        histogram_bins: probability bins per class for the histogram AUC.

    Example:
        >>> report = SegmentationReport()
        >>> record = report.add("img_01", probability, mask)
        >>> report.write("results/")
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        exact_auc_max_pixels: int = EXACT_AUC_MAX_PIXELS,
        histogram_bins: int = AUC_HISTOGRAM_BINS,
    ) -> None:
        self.threshold = _check_threshold(threshold)
        if exact_auc_max_pixels < 0:
            raise ValueError(f"exact_auc_max_pixels must be >= 0, got {exact_auc_max_pixels}.")
        if histogram_bins < 1:
            raise ValueError(f"histogram_bins must be >= 1, got {histogram_bins}.")
        self.exact_auc_max_pixels = int(exact_auc_max_pixels)
        self.histogram_bins = int(histogram_bins)
        self._records: list[dict[str, Any]] = []
        self._counts = ConfusionCounts()
        self._total_pixels = 0
        self._positive_histogram = np.zeros(self.histogram_bins, dtype=np.int64)
        self._negative_histogram = np.zeros(self.histogram_bins, dtype=np.int64)
        self._kept_probabilities: list[np.ndarray] | None = []
        self._kept_targets: list[np.ndarray] | None = []

    def __len__(self) -> int:
        return len(self._records)

    @property
    def counts(self) -> ConfusionCounts:
        """Summed confusion counts over all images added."""
        return self._counts

    def add(
        self, name: str, probability: np.ndarray, target: np.ndarray, threshold: float | None = None
    ) -> dict[str, Any]:
        """Add one image.

        Args:
            name: image name, reported as is (e.g. the file stem).
            probability: particle probability per pixel in [0, 1], any shape.
            target: binary ground truth, same shape as ``probability``.
            threshold: probability at or above which a pixel is particle; defaults to the
                report's ``threshold``.

        Returns:
            The image's record: name, threshold, tp/fp/fn/tn, scores and auc.

        Raises:
            ValueError: if shapes differ, ``target`` is not binary or ``probability`` leaves [0, 1].
        """
        threshold = self.threshold if threshold is None else _check_threshold(threshold)
        probability = np.asarray(probability)
        target = np.asarray(target)
        _check_same_shape(probability, target, "probability", "target")
        if not np.issubdtype(probability.dtype, np.floating):
            probability = probability.astype(np.float64)
        if probability.size and not (np.isfinite(probability).all() and probability.min() >= 0 and probability.max() <= 1):
            raise ValueError(
                f"probability of {name!r} must lie in [0, 1], got range "
                f"[{np.nanmin(probability)}, {np.nanmax(probability)}]: apply a sigmoid/softmax first "
                "(e.g. monai.transforms.Activations(sigmoid=True))."
            )
        target = _as_binary(target, "target")
        if any(record["name"] == name for record in self._records):
            logger.warning("Image name %r was already added to the report; both are kept.", name)

        counts = binary_confusion(probability >= threshold, target)
        record: dict[str, Any] = {"name": str(name), "threshold": threshold, **counts.as_dict()}
        record.update(scores_from_confusion(counts))
        record["auc"] = roc_auc(probability, target)
        self._records.append(record)
        self._counts = self._counts + counts
        self._update_auc_statistics(probability.ravel(), target.ravel())
        return dict(record)

    def _update_auc_statistics(self, probability: np.ndarray, target: np.ndarray) -> None:
        bins = np.minimum((probability * self.histogram_bins).astype(np.int64), self.histogram_bins - 1)
        self._positive_histogram += np.bincount(bins[target], minlength=self.histogram_bins)
        self._negative_histogram += np.bincount(bins[~target], minlength=self.histogram_bins)
        self._total_pixels += probability.size
        if self._kept_probabilities is None or self._kept_targets is None:
            return
        if self._total_pixels > self.exact_auc_max_pixels:
            logger.info(
                "Pooled pixels exceed %d: pooled AUC switches to %d-bin histograms.",
                self.exact_auc_max_pixels,
                self.histogram_bins,
            )
            self._kept_probabilities = self._kept_targets = None
            return
        self._kept_probabilities.append(probability.copy())
        self._kept_targets.append(target.copy())

    def merge(self, other: SegmentationReport) -> None:
        """Append all images of ``other`` (e.g. gathered from another rank) to this report.

        Args:
            other: a report with the same threshold and histogram bins.

        Raises:
            ValueError: if thresholds or bin counts differ.
        """
        if other.threshold != self.threshold:
            raise ValueError(f"other.threshold must be {self.threshold}, got {other.threshold}.")
        if other.histogram_bins != self.histogram_bins:
            raise ValueError(f"other.histogram_bins must be {self.histogram_bins}, got {other.histogram_bins}.")
        self._records.extend(dict(record) for record in other._records)
        self._counts = self._counts + other._counts
        self._positive_histogram += other._positive_histogram
        self._negative_histogram += other._negative_histogram
        self._total_pixels += other._total_pixels
        if (
            self._kept_probabilities is None
            or other._kept_probabilities is None
            or self._total_pixels > self.exact_auc_max_pixels
        ):
            self._kept_probabilities = self._kept_targets = None
        else:
            self._kept_probabilities.extend(other._kept_probabilities)
            self._kept_targets.extend(other._kept_targets)

    def _require_images(self) -> None:
        if not self._records:
            raise ValueError("the report holds no image: call add() first.")

    def per_image(self) -> list[dict[str, Any]]:
        """Return one record per image: name, threshold, tp/fp/fn/tn, scores and auc."""
        return [dict(record) for record in self._records]

    def pooled_auc(self) -> float:
        """Pooled ROC AUC over all pixels (exact or histogram, see the class docstring)."""
        self._require_images()
        if self._kept_probabilities is not None and self._kept_targets is not None:
            return roc_auc(np.concatenate(self._kept_probabilities), np.concatenate(self._kept_targets))
        return _histogram_auc(self._positive_histogram, self._negative_histogram)

    def pooled(self) -> dict[str, Any]:
        """Pooled scores over all pixels plus the mean and std of per-image scores.

        Returns:
            Scores of the summed confusion (dice ... f1), ``auc`` (pooled), ``auc_method``
            (``"exact"`` or ``"histogram"``), tp/fp/fn/tn, ``num_images``, and ``mean`` and
            ``std``: dicts of each score and auc over images.

        Raises:
            ValueError: if no image was added.
        """
        self._require_images()
        pooled: dict[str, Any] = dict(scores_from_confusion(self._counts))
        pooled["auc"] = self.pooled_auc()
        pooled["auc_method"] = "exact" if self._kept_probabilities is not None else "histogram"
        pooled.update(self._counts.as_dict())
        pooled["num_images"] = len(self._records)
        means: dict[str, float] = {}
        stds: dict[str, float] = {}
        for key in (*SCORE_NAMES, "auc"):
            values = np.array([record[key] for record in self._records], dtype=np.float64)
            values = values[~np.isnan(values)]
            means[key] = float(values.mean()) if values.size else math.nan
            stds[key] = float(values.std()) if values.size else math.nan
        pooled["mean"] = means
        pooled["std"] = stds
        return pooled

    def confusion_matrix(self) -> list[list[int]]:
        """Summed confusion matrix ``[[tn, fp], [fn, tp]]`` (rows: truth, columns: prediction)."""
        return self._counts.matrix()

    def classification_report(self) -> dict[str, Any]:
        """sklearn classification report of the summed confusion (see
        :func:`classification_report_from_confusion`)."""
        self._require_images()
        return classification_report_from_confusion(self._counts)

    def to_dict(self) -> dict[str, Any]:
        """Everything written to ``metrics.json``; NaN values are kept as floats."""
        return {
            "threshold": self.threshold,
            "per_image": self.per_image(),
            "pooled": self.pooled(),
            "confusion_matrix": self.confusion_matrix(),
            "classification_report": self.classification_report(),
        }

    def write(self, output_dir: str | Path) -> dict[str, Path]:
        """Write ``metrics.json`` and ``metrics.csv`` into ``output_dir`` (created if needed).

        ``metrics.json`` holds ``threshold``, ``per_image``, ``pooled`` (as :meth:`pooled`,
        with ``mean`` and ``std`` inside), ``confusion_matrix`` and ``classification_report``;
        NaN is written as ``null``. ``metrics.csv`` has the columns :data:`CSV_COLUMNS`, one
        row per image then a ``pooled`` row; NaN is written as ``nan``.

        Args:
            output_dir: folder to write into.

        Returns:
            ``{"json": path, "csv": path}``.

        Raises:
            ValueError: if no image was added.
        """
        content = self.to_dict()
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        json_path = output_dir / METRICS_JSON_NAME
        json_path.write_text(json.dumps(_json_safe(content), indent=2, allow_nan=False) + "\n")
        csv_path = output_dir / METRICS_CSV_NAME
        rows: list[Mapping[str, Any]] = [*content["per_image"], {**content["pooled"], "name": POOLED_ROW_NAME}]
        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        logger.info("Wrote segmentation metrics of %d images to %s", len(self), output_dir)
        return {"json": json_path, "csv": csv_path}

    def plot_confusion_matrix(self, path: str | Path, title: str = "Pixel confusion matrix") -> Path:
        """Save the summed confusion matrix as a PNG (see :func:`plot_confusion_matrix`).

        Raises:
            ValueError: if no image was added.
        """
        self._require_images()
        return plot_confusion_matrix(path, self._counts, title)


def plot_confusion_matrix(path: str | Path, counts: ConfusionCounts, title: str = "Pixel confusion matrix") -> Path:
    """Save a confusion matrix as a PNG with counts and row-normalised percentages.

    Args:
        path: output PNG file (parent folders are created).
        counts: the pixel counts.
        title: figure title.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.array(counts.matrix(), dtype=np.int64)
    row_totals = matrix.sum(axis=1, keepdims=True)
    row_fraction = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)

    figure = Figure(figsize=CONFUSION_FIGURE_SIZE_INCHES, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(row_fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="fraction of true class")
    for row, column in np.ndindex(matrix.shape):
        colour = "white" if row_fraction[row, column] > TEXT_CONTRAST_FRACTION else "black"
        axes.text(
            column,
            row,
            f"{matrix[row, column]:,}\n{PERCENT * row_fraction[row, column]:.1f}%",
            ha="center",
            va="center",
            color=colour,
        )
    ticks = range(len(CLASS_NAMES))
    axes.set_xticks(ticks, labels=list(CLASS_NAMES))
    axes.set_yticks(ticks, labels=list(CLASS_NAMES))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
