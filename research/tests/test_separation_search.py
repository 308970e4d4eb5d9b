"""Choosing the particle-separation parameters on held-out predictions of the CV folds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from research import cv, separation_search
from research.separation_search import (
    HeldOutPrediction,
    collect_held_out_predictions,
    score_separation,
    search,
    write_search,
)

SEPARATION_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "separation_band.json")
SMALL_GRID = {"min_marker_distance_px": (3,), "smoothing_sigma_px": (0.0, 1.0), "min_size_px": (10,), "marker_height_px": (0.25,)}


def held_out(merged_pair, with_separation: bool = True) -> HeldOutPrediction:
    """The merged pair (see tests/conftest.py) as one held-out prediction, pixel size 2 nm."""
    probability, truth, separation = merged_pair
    return HeldOutPrediction("pair", probability, separation if with_separation else None, truth, 2.0)


def test_separation_output_decides_the_split(merged_pair):
    pair = held_out(merged_pair)
    split = score_separation([pair], use_separation=True)
    assert split["f1"] == pytest.approx(1.0)
    assert split["particles_dice"] == pytest.approx(1.0)  # the watershed line falls on the true line
    merged = score_separation([pair], use_separation=False)
    assert merged["f1"] == pytest.approx(0.0)
    assert merged["particles_dice"] == pytest.approx(2 * 200 / (210 + 200))  # the line column counted as particle


def test_search_covers_the_grid_in_both_modes_best_first(tmp_path, merged_pair):
    rows = search([held_out(merged_pair)], SMALL_GRID).rows
    assert len(rows) == 2 * 2  # smoothing values x (with, without the separation output)
    assert [row["f1"] for row in rows] == sorted((row["f1"] for row in rows), reverse=True)
    assert rows[0]["use_separation"] is True and rows[0]["f1"] == pytest.approx(1.0)
    with write_search(rows, tmp_path / "search.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == len(rows)


def test_search_without_separation_output_has_one_mode(merged_pair):
    rows = search([held_out(merged_pair, with_separation=False)], SMALL_GRID).rows
    assert len(rows) == 2 and not any(row["use_separation"] for row in rows)


def test_particle_threshold_can_split_what_the_mask_merges(merged_pair):
    probability, truth, _ = merged_pair
    probability = probability.copy()
    probability[:, 15] = np.minimum(probability[:, 15], 0.6)  # the network drew the line, faintly
    pair = HeldOutPrediction("faint line", probability, None, truth, 2.0)
    assert score_separation([pair], use_separation=False, threshold=0.5)["f1"] == pytest.approx(0.0)
    assert score_separation([pair], use_separation=False, threshold=0.7)["f1"] == pytest.approx(1.0)


def test_valley_gain_splits_a_line_drawn_above_the_threshold(merged_pair):
    probability, truth, _ = merged_pair
    probability = probability.copy()
    probability[5:15, 5:26] = 0.97
    probability[5:15, 15] = 0.85  # the network drew the line, but above the particle threshold
    pair = HeldOutPrediction("shallow line", probability, None, truth, 2.0)
    assert score_separation([pair], use_separation=False, threshold=0.8)["f1"] == pytest.approx(0.0)
    assert score_separation([pair], use_separation=False, threshold=0.8, valley_gain=4.0)["f1"] == pytest.approx(1.0)


def test_objective_orders_the_rows_and_chooses_the_settings(merged_pair):
    """Split along the separation output, the pair's count is right (error 0); merged, one particle for two
    (error -0.5): ordered by the count error's size, the split rows come first and are chosen on every fold;
    an objective not known is refused."""
    predictions = [held_out(merged_pair), held_out(merged_pair)]
    predictions[1].fold = 1
    by_count = search(predictions, SMALL_GRID, objectives=("count_error", "f1"))
    assert by_count.rows[0]["use_separation"] is True and by_count.rows[0]["count_error"] == pytest.approx(0.0)
    assert [abs(row["count_error"]) for row in by_count.rows] == sorted(abs(row["count_error"]) for row in by_count.rows)
    assert set(by_count.selected) == {"count_error", "f1"}
    for selection in by_count.selected.values():
        assert all(setting["use_separation"] for setting in selection["per_fold"].values())
    for objectives in (("dice",), ()):
        with pytest.raises(ValueError, match="objectives must be among"):
            search(predictions, SMALL_GRID, objectives=objectives)


def test_settings_are_chosen_on_the_other_folds(merged_pair):
    """Fold 0's image needs a threshold above its faint line (0.6), fold 1's faint particle (0.65) one
    below: the best threshold of each fold fails on the other, which only the cross-fold estimate shows."""
    probability, truth, _ = merged_pair
    faint_line = probability.copy()
    faint_line[:, 15] = np.minimum(faint_line[:, 15], 0.6)
    faint_particle = np.zeros_like(probability)
    faint_particle[5:15, 5:15] = 0.65
    predictions = [
        HeldOutPrediction("faint line", faint_line, None, truth, 2.0, fold=0),
        HeldOutPrediction("faint particle", faint_particle, None, faint_particle > 0, 2.0, fold=1),
    ]
    result = search(predictions, {**SMALL_GRID, "smoothing_sigma_px": (1.0,), "threshold": (0.5, 0.7)})
    assert result.rows[0]["threshold"] == 0.7 and result.rows[0]["f1"] == pytest.approx(0.8)  # 2 of 3 found
    selected = result.selected["f1"]
    assert {fold: setting["threshold"] for fold, setting in selected["per_fold"].items()} == {"0": 0.5, "1": 0.7}
    assert selected["pooled"]["tp"] == 0 and selected["pooled"]["f1"] == pytest.approx(0.0)
    assert {fold: scores["tp"] for fold, scores in selected["per_fold_scores"].items()} == {"0": 0, "1": 0}
    # where they went: fold 0's two particles merged at 0.5, fold 1's faint one left out at 0.7
    by_size = selected["recall_by_size"]
    assert sum(row["true_count"] for row in by_size) == 3
    assert sum(row["missed_merged"] for row in by_size) == 2 and sum(row["missed_unsegmented"] for row in by_size) == 1
    # per held-out image: fold 0 counts one particle for two (-50 %), fold 1 none for one (-100 %, no median ECD)
    per_image = selected["per_image"]
    assert per_image["count_error"]["images"] == 2 and per_image["count_error"]["p50"] == pytest.approx(-0.75)
    assert per_image["median_ecd_error"]["images"] == 1


def test_settings_scored_in_worker_processes_give_the_same_rows(merged_pair):
    predictions = [held_out(merged_pair), held_out(merged_pair)]
    predictions[1].fold = 1
    in_one = search(predictions, SMALL_GRID)
    in_two = search(predictions, SMALL_GRID, workers=2)
    assert in_two.rows == in_one.rows and in_two.selected == in_one.selected
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        search(predictions, SMALL_GRID, workers=0)


def test_one_fold_has_no_cross_fold_estimate(merged_pair):
    assert search([held_out(merged_pair)], SMALL_GRID).selected == {}


def test_missing_fold_models_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="fold_"):
        collect_held_out_predictions(str(tmp_path), tmp_path)


@pytest.mark.slow
def test_held_out_predictions_of_a_separation_network(tiny_dataset, tiny_overrides, tmp_path):
    output = tmp_path / "cv"
    cv.train_fold(0, str(tiny_dataset), output, [SEPARATION_CONFIG], overrides={**tiny_overrides, "max_epochs": 1})
    predictions = collect_held_out_predictions(str(tiny_dataset), output, [SEPARATION_CONFIG], tiny_overrides)
    assert len(predictions) == 2  # fold 0's held-out half
    for item in predictions:
        assert item.probability.shape == item.separation.shape == item.truth.shape == (96, 96)
        assert 0.0 <= item.probability.min() and item.probability.max() <= 1.0
    assert len(search(predictions, SMALL_GRID).rows) == 4
    assert {item.fold for item in predictions} == {0}
    with pytest.raises(FileNotFoundError, match=r"no model.pt for fold\(s\) \[1\]; trained folds: \[0\]"):
        collect_held_out_predictions(str(tiny_dataset), output, [SEPARATION_CONFIG], tiny_overrides, folds=[0, 1])


def test_command_line_searches_the_thresholds_and_marker_heights_given(tmp_path, monkeypatch, merged_pair):
    monkeypatch.setattr(separation_search, "collect_held_out_predictions", lambda *args: [held_out(merged_pair)])
    separation_search.main(
        ["--dataset_dir", str(tmp_path), "--cv_dir", str(tmp_path), "--thresholds", "0.5", "0.7", "--marker_heights_px", "0.5"]
    )
    with (tmp_path / "separation_search.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * 2  # two thresholds, one height, with and without the separation output
    assert {float(row["threshold"]) for row in rows} == {0.5, 0.7} and {row["marker_height_px"] for row in rows} == {"0.5"}


def test_command_line_searches_every_separation_parameter_given(tmp_path, monkeypatch, merged_pair):
    monkeypatch.setattr(separation_search, "collect_held_out_predictions", lambda *args: [held_out(merged_pair)])
    separation_search.main(
        ["--dataset_dir", str(tmp_path), "--cv_dir", str(tmp_path), "--thresholds", "0.5", "--marker_heights_px", "0.5",
         "--min_sizes_px", "1", "20", "--smoothing_sigmas_px", "0", "--min_marker_distances_px", "2", "4"]
    )
    with (tmp_path / "separation_search.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * 2 * 2  # two minimum sizes, two marker distances, with and without the separation output
    assert {row["min_size_px"] for row in rows} == {"1", "20"} and {row["smoothing_sigma_px"] for row in rows} == {"0.0"}
    assert {row["min_marker_distance_px"] for row in rows} == {"2", "4"}


def test_command_line_named_search_with_overrides_keeps_earlier_searches(tmp_path, monkeypatch, merged_pair):
    calls = []

    def collect(dataset_dir, cv_dir, configs, overrides, folds):
        calls.append((overrides, folds))
        first, second = held_out(merged_pair), held_out(merged_pair)
        second.fold = 1
        return [first, second]

    monkeypatch.setattr(separation_search, "collect_held_out_predictions", collect)
    common = ["--dataset_dir", str(tmp_path), "--cv_dir", str(tmp_path), "--thresholds", "0.5", "--marker_heights_px", "0.5"]
    separation_search.main(common)
    separation_search.main(
        [*common, "--name", "tta", "--set", "tta=dihedral", "--objectives", "ks_distance", "f1", "--folds", "0", "1"]
    )
    assert calls == [({}, None), ({"tta": "dihedral"}, [0, 1])]
    for name in ("separation_search.csv", "separation_selected.json", "separation_search_tta.csv",
                 "separation_selected_tta.json"):
        assert (tmp_path / name).is_file(), name
    assert set(json.loads((tmp_path / "separation_selected_tta.json").read_text())) == {"ks_distance", "f1"}
