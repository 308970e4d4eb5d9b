"""Tests for rformer_monai.metrics: pure pixel metrics, the report and the ignite handler."""

from __future__ import annotations

import csv
import json
import logging
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from sklearn.metrics import roc_auc_score

from rformer_monai.metrics import (
    CSV_COLUMNS,
    SCORE_NAMES,
    ConfusionCounts,
    SegmentationReport,
    SegmentationReportHandler,
    binary_confusion,
    classification_report_from_confusion,
    roc_auc,
    scores_from_confusion,
)

# 4x4 case counted by hand: tp at (0,0) (0,1) (1,0); fp at (1,1) (3,3); fn at (0,2); 10 tn.
PREDICTION_4X4 = np.array(
    [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 1],
    ],
    dtype=np.uint8,
)
TARGET_4X4 = np.array(
    [
        [1, 1, 1, 0],
        [1, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ],
    dtype=np.uint8,
)
TP, FP, FN, TN = 3, 2, 1, 10


def hand_scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, Fraction]:
    """Scores of a non-degenerate confusion, written out as fractions."""
    precision = Fraction(tp, tp + fp)
    recall = Fraction(tp, tp + fn)
    return {
        "dice": Fraction(2 * tp, 2 * tp + fp + fn),
        "iou": Fraction(tp, tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "accuracy": Fraction(tp + tn, tp + fp + fn + tn),
        "f1": 2 * precision * recall / (precision + recall),
    }


def test_binary_confusion_hand_counted() -> None:
    counts = binary_confusion(PREDICTION_4X4, TARGET_4X4.astype(bool))
    assert counts == ConfusionCounts(tp=TP, fp=FP, fn=FN, tn=TN)
    assert counts.total == PREDICTION_4X4.size
    assert counts.matrix() == [[TN, FP], [FN, TP]]


def test_scores_hand_computed() -> None:
    scores = scores_from_confusion(ConfusionCounts(TP, FP, FN, TN))
    assert set(scores) == set(SCORE_NAMES)
    expected = {
        "dice": Fraction(2, 3),
        "iou": Fraction(1, 2),
        "precision": Fraction(3, 5),
        "recall": Fraction(3, 4),
        "accuracy": Fraction(13, 16),
        "f1": Fraction(2, 3),
    }
    assert expected == hand_scores(TP, FP, FN, TN)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(float(value), abs=1e-15), key


def test_confusion_counts_add_and_validation() -> None:
    total = ConfusionCounts(1, 2, 3, 4) + ConfusionCounts(10, 20, 30, 40)
    assert total == ConfusionCounts(11, 22, 33, 44)
    with pytest.raises(ValueError, match="fp must be a non-negative integer, got -1"):
        ConfusionCounts(tp=0, fp=-1)
    with pytest.raises(TypeError):
        ConfusionCounts() + 1  # type: ignore[operator]


EMPTY = np.zeros((4, 4), dtype=bool)
ONE_PIXEL = np.zeros((4, 4), dtype=bool)
ONE_PIXEL[2, 2] = True


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        # both empty: error free, every ratio is 1
        (EMPTY, EMPTY, dict(dice=1.0, iou=1.0, precision=1.0, recall=1.0, accuracy=1.0, f1=1.0)),
        # missed the only particle: precision has a zero denominator but the image has errors
        (EMPTY, ONE_PIXEL, dict(dice=0.0, iou=0.0, precision=0.0, recall=0.0, accuracy=15 / 16, f1=0.0)),
        # particle predicted on an empty target: recall has a zero denominator, errors -> 0
        (ONE_PIXEL, EMPTY, dict(dice=0.0, iou=0.0, precision=0.0, recall=0.0, accuracy=15 / 16, f1=0.0)),
        # zero-size image
        (EMPTY[:0], EMPTY[:0], dict(dice=1.0, iou=1.0, precision=1.0, recall=1.0, accuracy=1.0, f1=1.0)),
    ],
    ids=["both-empty", "prediction-empty", "target-empty", "zero-size"],
)
def test_scores_empty_cases(prediction: np.ndarray, target: np.ndarray, expected: dict[str, float]) -> None:
    scores = scores_from_confusion(binary_confusion(prediction, target))
    assert scores == pytest.approx(expected)
    assert not any(math.isnan(value) for value in scores.values())


@pytest.mark.parametrize("counts", [(0, 0, 0, 5), (0, 3, 0, 5), (0, 0, 3, 5), (4, 1, 2, 9), (7, 0, 0, 0)])
def test_f1_equals_dice(counts: tuple[int, int, int, int]) -> None:
    scores = scores_from_confusion(ConfusionCounts(*counts))
    assert scores["f1"] == pytest.approx(scores["dice"])


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"prediction \(4, 4\) and target \(3, 4\)"):
        binary_confusion(PREDICTION_4X4, TARGET_4X4[:3])
    with pytest.raises(ValueError, match=r"probability \(4, 4\) and target \(4, 3\)"):
        roc_auc(np.zeros((4, 4)), TARGET_4X4[:, :3])


def test_non_binary_input_raises() -> None:
    with pytest.raises(ValueError, match="target must be binary"):
        binary_confusion(PREDICTION_4X4, TARGET_4X4 * 2)


def test_roc_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    target = rng.random((8, 8)) < 0.4
    probability = np.clip(0.3 * target + rng.random((8, 8)) * 0.7, 0.0, 1.0)
    assert roc_auc(probability, target) == pytest.approx(roc_auc_score(target.ravel(), probability.ravel()))


def test_roc_auc_single_class_is_nan(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert math.isnan(roc_auc(np.linspace(0, 1, 16).reshape(4, 4), EMPTY))
    assert "single class" in caplog.text


def test_classification_report_support_equals_counts() -> None:
    report = classification_report_from_confusion(ConfusionCounts(TP, FP, FN, TN))
    assert report["particle"]["support"] == TP + FN
    assert report["background"]["support"] == TN + FP
    assert isinstance(report["particle"]["support"], int)
    assert report["macro avg"]["support"] == TP + FP + FN + TN
    assert report["particle"]["precision"] == pytest.approx(TP / (TP + FP))
    assert report["particle"]["recall"] == pytest.approx(TP / (TP + FN))
    assert report["background"]["precision"] == pytest.approx(TN / (TN + FN))
    assert report["accuracy"] == pytest.approx((TP + TN) / (TP + FP + FN + TN))
    with pytest.raises(ValueError, match="counts must hold at least one pixel"):
        classification_report_from_confusion(ConfusionCounts())


def random_probability_map(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """An imperfect classifier: particles near 0.7, background near 0.3, overlapping."""
    target = rng.random(shape) < 0.3
    probability = rng.beta(np.where(target, 5.0, 2.0), np.where(target, 2.0, 5.0))
    return probability, target


def two_image_report(**kwargs: float) -> SegmentationReport:
    report = SegmentationReport(**kwargs)
    report.add("first", PREDICTION_4X4 * 0.75, TARGET_4X4)  # same confusion as the 4x4 case
    probability = np.full((4, 4), 0.2)
    probability[0, :2] = 0.5  # exactly at threshold counts as particle
    target = np.zeros((4, 4), dtype=bool)
    target[0, :3] = True
    report.add("second", probability, target)  # tp 2, fp 0, fn 1, tn 13
    return report


def test_report_per_image_and_pooled() -> None:
    report = two_image_report()
    first, second = report.per_image()
    assert (first["tp"], first["fp"], first["fn"], first["tn"]) == (TP, FP, FN, TN)
    assert (second["tp"], second["fp"], second["fn"], second["tn"]) == (2, 0, 1, 13)
    assert first["dice"] == pytest.approx(2 / 3)
    assert second["dice"] == pytest.approx(4 / 5)

    pooled = report.pooled()
    expected = hand_scores(TP + 2, FP, FN + 1, TN + 13)
    for key, value in expected.items():
        assert pooled[key] == pytest.approx(float(value)), key
    assert report.confusion_matrix() == [[TN + 13, FP], [FN + 1, TP + 2]]
    assert pooled["num_images"] == 2
    assert pooled["mean"]["dice"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert pooled["std"]["dice"] == pytest.approx(abs(2 / 3 - 4 / 5) / 2)
    all_probability = np.concatenate([(PREDICTION_4X4 * 0.75).ravel(), np.where(np.arange(16) < 2, 0.5, 0.2)])
    all_target = np.concatenate([TARGET_4X4.ravel(), np.arange(16) < 3])
    assert pooled["auc"] == pytest.approx(roc_auc_score(all_target, all_probability))
    assert pooled["auc_method"] == "exact"
    assert report.classification_report()["particle"]["support"] == TP + FN + 3


def test_report_rejects_logits_and_empty_use() -> None:
    report = SegmentationReport()
    with pytest.raises(ValueError, match="no image"):
        report.pooled()
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\].*sigmoid"):
        report.add("logits", np.full((2, 2), 3.0), np.ones((2, 2)))
    with pytest.raises(ValueError, match="threshold must lie in \\[0, 1\\], got 1.5"):
        SegmentationReport(threshold=1.5)


def test_pooled_histogram_auc_close_to_exact() -> None:
    rng = np.random.default_rng(1)
    maps = [random_probability_map(rng, (96, 96)) for _ in range(3)]
    histogram_report = SegmentationReport(exact_auc_max_pixels=0)
    exact_report = SegmentationReport()
    for index, (probability, target) in enumerate(maps):
        histogram_report.add(f"img_{index}", probability, target)
        exact_report.add(f"img_{index}", probability, target)
    exact = roc_auc_score(
        np.concatenate([target.ravel() for _, target in maps]),
        np.concatenate([probability.ravel() for probability, _ in maps]),
    )
    assert exact_report.pooled()["auc_method"] == "exact"
    assert exact_report.pooled_auc() == pytest.approx(exact, abs=1e-12)
    assert histogram_report.pooled()["auc_method"] == "histogram"
    assert histogram_report.pooled_auc() == pytest.approx(exact, abs=1e-3)


def test_pooled_auc_switches_to_histogram_past_limit() -> None:
    rng = np.random.default_rng(2)
    report = SegmentationReport(exact_auc_max_pixels=16 * 16)
    report.add("fits", *random_probability_map(rng, (16, 16)))
    assert report.pooled()["auc_method"] == "exact"
    report.add("overflows", *random_probability_map(rng, (16, 16)))
    assert report.pooled()["auc_method"] == "histogram"


def test_merge_equals_single_report() -> None:
    rng = np.random.default_rng(3)
    maps = [random_probability_map(rng, (12, 12)) for _ in range(3)]
    whole, left, right = SegmentationReport(), SegmentationReport(), SegmentationReport()
    for index, (probability, target) in enumerate(maps):
        whole.add(str(index), probability, target)
        (left if index == 0 else right).add(str(index), probability, target)
    left.merge(right)
    assert left.per_image() == whole.per_image()
    merged, expected = left.pooled(), whole.pooled()
    assert merged["auc_method"] == expected["auc_method"] == "exact"
    for key in (*SCORE_NAMES, "auc", "tp", "fp", "fn", "tn", "num_images"):
        assert merged[key] == pytest.approx(expected[key]), key
    assert merged["mean"] == pytest.approx(expected["mean"])
    assert merged["std"] == pytest.approx(expected["std"])
    with pytest.raises(ValueError, match="other.threshold"):
        left.merge(SegmentationReport(threshold=0.3))


def test_write_json_and_csv_agree(tmp_path: Path) -> None:
    report = two_image_report()
    report.add("no_particles", np.full((4, 4), 0.1), np.zeros((4, 4)))  # AUC undefined
    paths = report.write(tmp_path / "out")
    assert paths == {"json": tmp_path / "out" / "metrics.json", "csv": tmp_path / "out" / "metrics.csv"}

    content = json.loads(paths["json"].read_text())
    assert set(content) == {"threshold", "per_image", "pooled", "confusion_matrix", "classification_report"}
    assert content["threshold"] == 0.5
    assert content["confusion_matrix"] == report.confusion_matrix()
    assert content["per_image"][2]["auc"] is None  # NaN is written as null
    assert content["pooled"]["mean"]["auc"] == pytest.approx(np.mean([r["auc"] for r in report.per_image()[:2]]))
    assert content["classification_report"]["particle"]["support"] == TP + FN + 3

    with paths["csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["name"] for row in rows] == ["first", "second", "no_particles", "pooled"]
    for row, record in zip(rows, [*content["per_image"], content["pooled"]], strict=True):
        for column in CSV_COLUMNS[1:]:
            expected = math.nan if record[column] is None else record[column]
            assert float(row[column]) == pytest.approx(expected, nan_ok=True), (row["name"], column)


def test_plot_confusion_matrix_writes_png(tmp_path: Path) -> None:
    path = two_image_report().plot_confusion_matrix(tmp_path / "plots" / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- handler


def meta_sample(probability: np.ndarray, label: np.ndarray, file_name: str | None) -> dict[str, torch.Tensor]:
    """A decollated evaluator sample: (1, H, W) probability MetaTensor and label."""
    meta = {} if file_name is None else {"filename_or_obj": file_name}
    return {
        "pred": MetaTensor(torch.as_tensor(probability, dtype=torch.float32)[None], meta=meta),
        "label": torch.as_tensor(label, dtype=torch.float32)[None],
    }


def test_handler_with_ignite_engine(tmp_path: Path) -> None:
    second_probability = np.where(TARGET_4X4 == 1, 0.9, 0.1).astype(np.float32)
    second_probability[3, 3] = 0.6  # one false positive: tp 4, fp 1, fn 0, tn 11
    batches = [
        [
            meta_sample(PREDICTION_4X4 * 0.75, TARGET_4X4, "/data/sem/sample_A.tif"),
            meta_sample(second_probability, TARGET_4X4, None),
        ],
        # a batch left undecollated (dict of batched tensors) is decollated by the handler
        {
            "pred": MetaTensor(torch.zeros(1, 1, 4, 4), meta={"filename_or_obj": ["b/sample_C.png"]}),
            "label": torch.zeros(1, 1, 4, 4),
        },
    ]
    engine = Engine(lambda engine, batch: batch)
    handler = SegmentationReportHandler(output_dir=str(tmp_path / "metrics"))
    handler.attach(engine)
    engine.run(batches, max_epochs=1)

    content = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert [record["name"] for record in content["per_image"]] == ["sample_A", "image_1", "sample_C"]
    counts = [[record[key] for key in ("tp", "fp", "fn", "tn")] for record in content["per_image"]]
    assert counts == [[TP, FP, FN, TN], [4, 1, 0, 11], [0, 0, 0, 16]]
    assert content["per_image"][0]["dice"] == pytest.approx(2 / 3)
    assert content["per_image"][1]["dice"] == pytest.approx(8 / 9)
    assert content["per_image"][2]["dice"] == 1.0
    assert content["per_image"][2]["auc"] is None
    assert content["pooled"]["dice"] == pytest.approx(2 * 7 / (2 * 7 + 3 + 1))
    assert content["pooled"]["mean"]["dice"] == pytest.approx((2 / 3 + 8 / 9 + 1) / 3)
    assert content["confusion_matrix"] == [[TN + 11 + 16, FP + 1], [FN, TP + 4]]
    assert (tmp_path / "metrics" / "confusion_matrix.png").is_file()
    assert engine.state.segmentation_report is handler.report

    # a second run starts a fresh report
    engine.run(batches[:1], max_epochs=1)
    assert len(handler.report) == 2


def test_handler_rejects_multichannel_pred(tmp_path: Path) -> None:
    engine = Engine(lambda engine, batch: batch)
    SegmentationReportHandler(output_dir=tmp_path).attach(engine)
    sample = {"pred": torch.rand(2, 4, 4), "label": torch.zeros(1, 4, 4)}
    with pytest.raises(ValueError, match=r"'pred' must have shape \(1, H, W\).*got \(2, 4, 4\)"):
        engine.run([[sample]], max_epochs=1)


def test_handler_with_supervised_evaluator(tmp_path: Path) -> None:
    from monai.data import DataLoader
    from monai.engines import SupervisedEvaluator
    from monai.transforms import Activationsd

    # the "network" is the identity, so the images are the logits
    logits = torch.where(torch.as_tensor(PREDICTION_4X4, dtype=torch.bool), 2.0, -2.0)[None]
    data = [
        {
            "image": MetaTensor(logits.clone(), meta={"filename_or_obj": f"/sem/{name}.tif"}),
            "label": MetaTensor(torch.as_tensor(TARGET_4X4, dtype=torch.float32)[None]),
        }
        for name in ("particles_01", "particles_02")
    ]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),
        postprocessing=Activationsd(keys="pred", sigmoid=True),
    )
    handler = SegmentationReportHandler(output_dir=tmp_path)
    handler.attach(evaluator)
    evaluator.run()

    content = json.loads((tmp_path / "metrics.json").read_text())
    assert [record["name"] for record in content["per_image"]] == ["particles_01", "particles_02"]
    assert content["pooled"]["tp"] == 2 * TP and content["pooled"]["tn"] == 2 * TN
    assert content["pooled"]["dice"] == pytest.approx(2 / 3)
    assert content["pooled"]["auc"] == pytest.approx(roc_auc_score(TARGET_4X4.ravel(), PREDICTION_4X4.ravel()))



@pytest.mark.parametrize("rank", [0, 1])
def test_handler_gathers_ranks_under_torch_distributed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank: int
) -> None:
    """Two ranks simulated in process: rank 0 merges the gathered reports and writes; rank 1 writes nothing.

    (The same flow was also checked once with a real 2-process gloo group; it takes ~25 s.)
    """
    from rformer_monai.metrics import handlers

    other_rank = SegmentationReport()
    other_rank.add("from_other_rank", PREDICTION_4X4 * 0.75, TARGET_4X4)

    def fake_all_gather_object(gathered: list, report: SegmentationReport) -> None:
        gathered[:] = [report, other_rank] if rank == 0 else [other_rank, report]

    monkeypatch.setattr(handlers, "_distributed_world", lambda: (rank, 2))
    monkeypatch.setattr(handlers.dist, "all_gather_object", fake_all_gather_object)
    engine = Engine(lambda engine, batch: batch)
    handler = SegmentationReportHandler(output_dir=tmp_path)
    handler.attach(engine)
    engine.run([[meta_sample(PREDICTION_4X4 * 0.75, TARGET_4X4, f"rank_{rank}.tif")]], max_epochs=1)

    if rank == 1:
        assert not (tmp_path / "metrics.json").exists()
        return
    content = json.loads((tmp_path / "metrics.json").read_text())
    assert [record["name"] for record in content["per_image"]] == ["rank_0", "from_other_rank"]
    assert content["pooled"]["tp"] == 2 * TP
    assert engine.state.segmentation_report is handler.report
