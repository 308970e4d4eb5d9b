"""Cross-validation through the bundle's workflows, classical baselines, and the reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from research import cv
from research.baselines import (
    best_fixed_threshold,
    evaluate_baseline_fold,
    otsu_mask,
)
from rformer_monai.data import load_fold


def test_fixed_threshold_is_the_best_level_on_training_images():
    rng = np.random.default_rng(0)
    masks = [rng.random((20, 20)) > 0.7 for _ in range(3)]
    images = [np.where(m, 150.0, 40.0) + rng.normal(0, 5, m.shape) for m in masks]
    level = best_fixed_threshold(images, masks)
    assert max(i[~m].max() for i, m in zip(images, masks)) < level <= min(i[m].min() for i, m in zip(images, masks))
    assert all(((i >= level) == m).all() for i, m in zip(images, masks))


def test_otsu_mask_fills_holes_and_drops_specks():
    image = np.zeros((60, 60))
    image[10:40, 10:40] = 200.0
    image[20:25, 20:25] = 0.0  # a hole inside the particle
    image[55, 55] = 200.0  # a one-pixel speck
    mask = otsu_mask(image)
    assert mask[10:40, 10:40].all()
    assert not mask[55, 55]


@pytest.mark.parametrize("method", ["otsu", "fixed_threshold"])
def test_baselines_write_the_same_report_as_networks(tiny_dataset, tmp_path, method):
    output = tmp_path / method
    for fold in (0, 1):
        evaluate_baseline_fold(method, str(tiny_dataset), output / f"fold_{fold}", fold, num_folds=2)
    summary = cv.summarize(output, method)
    assert summary["num_folds"] == 2
    folds = [json.loads((output / f"fold_{f}" / "metrics.json").read_text())["pooled"] for f in (0, 1)]
    assert summary["mean"]["dice"] == pytest.approx(np.mean([f["dice"] for f in folds]))
    assert summary["std"]["dice"] == pytest.approx(np.std([f["dice"] for f in folds], ddof=1))
    tp = sum(f["tp"] for f in folds)
    assert summary["confusion_matrix"][1][1] == tp
    for name in ("cv_summary.json", "cv_folds.csv", "cv_report.md", "confusion_matrix.png"):
        assert (output / name).is_file()


def test_summarize_without_folds_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no fold_"):
        cv.summarize(tmp_path, "empty")


@pytest.mark.slow
def test_network_fold_trains_and_evaluates_through_the_bundle(tiny_dataset, tiny_overrides, tmp_path):
    output = tmp_path / "cv"
    fold_dir = cv.train_fold(0, str(tiny_dataset), output, overrides={**tiny_overrides, "max_epochs": 2})
    assert (fold_dir / "model.pt").is_file()
    assert cv.evaluate_fold(0, str(tiny_dataset), output, overrides=tiny_overrides) == fold_dir
    assert (fold_dir / "model.pt").is_file()
    history = (fold_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss") and len(history) == 3
    metrics = json.loads((fold_dir / "metrics.json").read_text())
    assert metrics["pooled"]["num_images"] == 2  # the held-out half of four images
    assert list((fold_dir / "overlays").glob("*_overlay.png"))
    instances = json.loads((fold_dir / "instance_metrics.json").read_text())
    assert instances["pooled"]["true_count"] == sum(image["true_count"] for image in instances["per_image"])
    summary = cv.summarize(output, "tiny", {"parameters": 1})
    assert summary["instances"]["pooled"]["true_count"] == instances["pooled"]["true_count"]
    measurable = summary["instances"]["measurable"]
    assert measurable["pooled"]["true_count"] == instances["measurable"]["pooled"]["true_count"] <= instances["pooled"]["true_count"]
    report = (output / "cv_report.md").read_text()
    assert "Particles (IoU > 0.5" in report and f"of at least {measurable['min_size_px']} px" in report
    assert (output / "learning_curves.png").stat().st_size > 0
    table = cv.compare([output], tmp_path / "comparison.md")
    assert "tiny" in table and f"{summary['mean']['dice']:.4f}" in table
    assert f"{summary['instances']['pooled']['f1']:.4f}" in table


@pytest.mark.slow
def test_command_line_records_the_recipe_in_the_report(tiny_dataset, tiny_overrides, tmp_path):
    output = tmp_path / "cv"
    tiny = {**tiny_overrides, "max_epochs": 1}
    num_folds = tiny.pop("num_folds")
    arguments = ["run", "--dataset_dir", str(tiny_dataset), "--output_dir", str(output), "--num_folds", str(num_folds)]
    assert cv.main([*arguments, *(f"--set={key}={json.dumps(value)}" for key, value in tiny.items())]) == 0
    recipe = json.loads((output / "cv_summary.json").read_text())["method"]["recipe"]
    assert recipe == {"configs": [], "overrides": {"num_folds": 2, "seed": 0, "split_seed": 0, **tiny}}
    report = (output / "cv_report.md").read_text()
    assert "overrides: num_folds=2, seed=0, split_seed=0, network_def#channels=[4, 8, 16, 32]" in report


def test_the_recipe_record_leaves_out_a_folds_restart():
    overrides = {"max_epochs": 50, "resume_from": "cv/fold_4/checkpoints/checkpoint_epoch=18.pt"}
    recipe = cv.recipe_record(["research/configs/warm_start.json"], overrides)
    assert recipe == {"configs": ["research/configs/warm_start.json"], "overrides": {"max_epochs": 50}}
    assert "resume_from" in overrides  # the fold's own run still gets it


def _held_out_names(dataset_dir: Path, split_seed: int) -> list[str]:
    validation = load_fold(str(dataset_dir), str(dataset_dir / "unused"), 0, 2, split_seed)["validation"]
    return sorted(Path(item["image"]).name for item in validation)


@pytest.mark.slow
def test_fold_scored_on_another_split_than_it_trained_on_is_refused(tiny_dataset, tiny_overrides, tmp_path):
    output = tmp_path / "cv"
    fold_dir = cv.train_fold(0, str(tiny_dataset), output, overrides={**tiny_overrides, "max_epochs": 1})
    record = json.loads((fold_dir / cv.SPLIT_RECORD_NAME).read_text())
    assert record == {"split_seed": 0, "num_folds": 2, "held_out_images": _held_out_names(tiny_dataset, 0)}
    assert _held_out_names(tiny_dataset, 1) != record["held_out_images"]  # seed 1 holds out other images
    with pytest.raises(ValueError, match="trained with split_seed 0.*pass --set split_seed=0"):
        cv.fold_evaluation(0, str(tiny_dataset), output, overrides={**tiny_overrides, "split_seed": 1})
    reseeded = {**tiny_overrides, "seed": 1, "split_seed": 0}  # other weights, the recorded split
    other_weights = cv.fold_evaluation(0, str(tiny_dataset), output, overrides=reseeded)
    scored = other_weights.parser.get_parsed_content("validate#dataset#data")
    assert sorted(Path(item["image"]).name for item in scored) == record["held_out_images"]


def test_per_image_errors_are_spread_over_every_held_out_image(tmp_path):
    errors = {0: [0.1, -0.2, None], 1: [0.3, -0.4]}
    for fold, values in errors.items():
        per_image = [{"name": f"{fold}_{i}", "count_error": v, "median_ecd_error": 0.05} for i, v in enumerate(values)]
        pooled = {key: 0.0 for key in cv.INSTANCE_FOLD_METRICS} | {"tp": 1, "fp": 0, "fn": 0, "pred_count": 1, "true_count": 1}
        (tmp_path / f"fold_{fold}").mkdir()
        (tmp_path / f"fold_{fold}" / "instance_metrics.json").write_text(json.dumps({"pooled": pooled, "per_image": per_image}))
    spread = cv._instance_summary(sorted(tmp_path.glob("fold_*")))["per_image"]
    assert spread["count_error"]["images"] == 4  # the image without a count error is left out
    assert spread["count_error"]["p50"] == pytest.approx(np.median([0.1, -0.2, 0.3, -0.4]))
    assert spread["count_error"]["std"] == pytest.approx(np.std([0.1, -0.2, 0.3, -0.4], ddof=1))
    assert spread["median_ecd_error"]["p10"] == spread["median_ecd_error"]["p90"] == pytest.approx(0.05)
