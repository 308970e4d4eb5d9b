"""The flow-field particle step's settings chosen on cross-validated predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from research import flow_search
from research.flow_fields import FlowFields
from research.flow_search import FLOW_ERROR_OFF, GRID, flow_errors, search
from research.separation_search import HeldOutPrediction
from research.tests.test_polygon_search import discs


def prediction(
    mask: np.ndarray, fold: int, probability_scale: float = 1.0, turn_degrees: float = 0.0
) -> HeldOutPrediction:
    """A held-out prediction whose flows are the truth's own turned by ``turn_degrees`` (180: pointing outwards),
    its particle probability scaled."""
    target = FlowFields()(torch.as_tensor(mask[None], dtype=torch.float32)).numpy()
    vertical, horizontal = 2.0 * target[1:] - 1.0
    turn = np.deg2rad(turn_degrees)
    cos, sin = np.cos(turn), np.sin(turn)
    turned = np.stack([cos * vertical - sin * horizontal, sin * vertical + cos * horizontal])
    flows = 0.5 + 0.5 * turned
    return HeldOutPrediction(f"fold{fold}", target[0] * probability_scale, flows, mask, pixel_size_nm=2.0, fold=fold)


def test_perfect_flows_score_one_and_the_settings_are_chosen_on_the_other_folds():
    predictions = [
        prediction(discs([(20, 20), (20, 60)]), fold=0),
        prediction(discs([(40, 30)]), fold=0),
        prediction(discs([(30, 25), (30, 70)]), fold=1, probability_scale=0.45),  # never above 0.45
    ]
    result = search(predictions)
    rows, selected = result.rows, result.selected["f1"]
    assert len(rows) == len(GRID["threshold"]) * len(GRID["flow_error"])
    assert rows[0]["f1"] == 1.0 and rows[0]["threshold"] < 0.45
    high = [row for row in rows if row["threshold"] > 0.45]
    assert high and all(row["f1"] < 1.0 for row in high)  # fold 1's particles stay below the threshold
    assert set(selected["per_fold"]) == {"0", "1"} and selected["per_fold"]["0"]["threshold"] < 0.45
    assert selected["pooled"]["true_count"] == 5 and selected["pooled"]["f1"] == 1.0


def test_the_flow_error_check_drops_particles_whose_flows_spiral_in_unless_it_is_off():
    # flows turned by 60 degrees still gather each disc at its centre, but differ from its own by 1.0
    predictions = [prediction(discs([(20, 20), (20, 60)]), fold=0, turn_degrees=60.0)]
    grid = {"threshold": (0.5,), "flow_error": (GRID["flow_error"][0], FLOW_ERROR_OFF)}
    rows = {row["flow_error"]: row for row in search(predictions, grid).rows}
    assert rows[GRID["flow_error"][0]]["recall"] == 0.0 and rows[FLOW_ERROR_OFF]["recall"] == 1.0


def test_flow_errors_are_zero_for_the_true_flows_and_four_for_reversed_ones():
    exact = flow_errors(prediction(discs([(20, 20), (20, 60)]), fold=0))
    assert exact["flow_error"] == pytest.approx(0.0, abs=1e-6) and exact["flow_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert exact["particle_pixels"] > 0
    reversed_ = flow_errors(prediction(discs([(20, 20), (20, 60)]), fold=0, turn_degrees=180.0))
    assert reversed_["flow_error"] == pytest.approx(4.0, rel=0.02)
    assert reversed_["flow_cosine"] == pytest.approx(-1.0, abs=0.02)


def test_command_line_writes_the_flow_errors_the_search_and_the_choice_on_the_other_folds(tmp_path, monkeypatch):
    predictions = [prediction(discs([(20, 20), (20, 60)]), fold=0), prediction(discs([(30, 40)]), fold=1)]
    monkeypatch.setattr(flow_search, "collect_held_out_predictions", lambda *args, **kwargs: predictions)
    flow_search.main(["--dataset_dir", str(tmp_path), "--cv_dir", str(tmp_path), "--thresholds", "0.4", "0.5"])
    errors = json.loads((tmp_path / flow_search.FLOWS_NAME).read_text())
    assert set(errors["per_image"]) == {"fold0", "fold1"} and errors["mean"]["flow_cosine"] == pytest.approx(1.0)
    with (tmp_path / "flow_search.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == 2 * len(GRID["flow_error"])
    selected = json.loads((tmp_path / "flow_selected.json").read_text())
    assert set(selected["per_fold"]) == {"0", "1"} and selected["pooled"]["f1"] == 1.0


def test_command_line_chooses_for_another_objective_into_files_named_after_it(tmp_path, monkeypatch):
    # flows turned by 60 degrees: the flow-error check at 0.4 drops both discs (count -100 %), off keeps them
    predictions = [prediction(discs([(20, 20), (20, 60)]), fold=0, turn_degrees=60.0)]
    monkeypatch.setattr(flow_search, "collect_held_out_predictions", lambda *args, **kwargs: predictions)
    flow_search.main(["--dataset_dir", str(tmp_path), "--cv_dir", str(tmp_path), "--objective", "count_error"])
    with (tmp_path / "flow_search_count_error.csv").open() as stream:
        count_errors = [abs(float(row["count_error"])) for row in csv.DictReader(stream)]
    assert count_errors == sorted(count_errors) and count_errors[0] == 0.0 and count_errors[-1] == 1.0
    assert not (tmp_path / "flow_search.csv").exists()
