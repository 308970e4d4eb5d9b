"""The star-polygon thresholds chosen on cross-validated predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from research import polygon_search
from research.polygon_search import GRID, ray_errors, search
from research.separation_search import HeldOutPrediction
from research.star_polygons import MAX_RAY_PX, StarPolygons


def discs(centres: list[tuple[int, int]], radius_px: int = 10, shape: tuple[int, int] = (64, 96)) -> np.ndarray:
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    return np.any([(rows - r) ** 2 + (columns - c) ** 2 <= radius_px**2 for r, c in centres], axis=0)


def prediction(mask: np.ndarray, fold: int, object_scale: float = 1.0) -> HeldOutPrediction:
    """A held-out prediction whose polygon outputs are the truth's own, the object probability scaled."""
    target = StarPolygons()(torch.as_tensor(mask[None], dtype=torch.float32)).numpy()
    separation = target[1:].copy()
    separation[0] *= object_scale
    return HeldOutPrediction(f"fold{fold}", target[0], separation, mask, pixel_size_nm=2.0, fold=fold)


def test_perfect_polygons_score_one_and_the_thresholds_are_chosen_on_the_other_folds():
    predictions = [
        prediction(discs([(20, 20), (20, 60)]), fold=0),
        prediction(discs([(40, 30)]), fold=0),
        prediction(discs([(30, 25), (30, 70)]), fold=1, object_scale=0.45),  # never above 0.45: 0.5 finds nothing
    ]
    result = search(predictions)
    rows, selected = result.rows, result.selected["f1"]
    assert len(rows) == len(GRID["object_threshold"]) * len(GRID["overlap_threshold"]) * len(GRID["within_mask"])
    assert rows[0]["f1"] == 1.0 and (rows[0]["object_threshold"] < 0.45 or rows[0]["within_mask"])
    lost = [row for row in rows if row["object_threshold"] > 0.45 and not row["within_mask"]]
    assert lost and all(row["f1"] < 1.0 for row in lost)  # fold 1's particles have no polygon
    kept = [row for row in rows if row["object_threshold"] > 0.45 and row["within_mask"]]
    assert kept and all(row["f1"] == 1.0 for row in kept)  # the mask keeps them
    assert set(selected["per_fold"]) == {"0", "1"}
    assert selected["pooled"]["true_count"] == 5


def test_ray_errors_are_zero_for_the_true_rays_and_grow_with_a_wrong_length():
    item = prediction(discs([(20, 20), (20, 60)]), fold=0)
    exact = ray_errors(item)
    assert exact["ray_error_px"] == pytest.approx(0.0, abs=1e-4) and exact["ray_correlation"] == pytest.approx(1.0)
    assert exact["central_pixels"] > 0 and exact["background_object_probability"] == 0.0
    item.separation[1:] += 2.0 / MAX_RAY_PX  # every ray 2 px too long
    assert ray_errors(item)["ray_error_px"] == pytest.approx(2.0, rel=1e-3)
    item.separation[0][~item.truth] = 0.25
    assert ray_errors(item)["background_object_probability"] == pytest.approx(0.25)


def test_command_line_writes_the_rays_the_search_and_the_choice_on_the_other_folds(tmp_path, monkeypatch):
    predictions = [prediction(discs([(20, 20), (20, 60)]), fold=0), prediction(discs([(30, 40)]), fold=1)]
    monkeypatch.setattr(polygon_search, "collect_held_out_predictions", lambda *args, **kwargs: predictions)
    polygon_search.main(["--dataset_dir", str(tmp_path), "--cv_dir", str(tmp_path), "--object_thresholds", "0.5"])
    rays = json.loads((tmp_path / polygon_search.RAYS_NAME).read_text())
    assert set(rays["per_image"]) == {"fold0", "fold1"} and rays["mean"]["ray_error_px"] == pytest.approx(0.0, abs=1e-3)
    with (tmp_path / polygon_search.SEARCH_NAME).open() as stream:
        assert len(list(csv.DictReader(stream))) == len(GRID["overlap_threshold"]) * len(GRID["within_mask"])
    selected = json.loads((tmp_path / polygon_search.SELECTED_NAME).read_text())
    assert set(selected["per_fold"]) == {"0", "1"} and selected["pooled"]["f1"] == 1.0
