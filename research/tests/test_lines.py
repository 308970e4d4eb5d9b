"""Scores of predicted probabilities on the true lines between touching particles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from research import line_check
from research.lines import line_probabilities, line_scores
from research.separation_search import HeldOutPrediction


def three_squares() -> np.ndarray:
    """Three 10x10 squares in a row, each split from the next by a one-pixel column (15 and 26)."""
    truth = np.zeros((20, 42), dtype=bool)
    truth[5:15, 5:37] = True
    truth[:, [15, 26]] = False
    return truth


def test_a_line_drawn_above_the_threshold_joins_its_pair(merged_pair):
    probability, truth, _ = merged_pair
    lines = line_probabilities(probability, truth)
    assert lines.pair_maxima.tolist() == pytest.approx([0.9])
    scores = line_scores([lines], thresholds=[0.8, 0.95])
    # the line: the 10 pixels between the squares and the 2 at its ends that touch both squares diagonally
    assert scores["pairs"] == 1 and scores["line_pixels"] == 12
    assert scores["median_line_probability"] == pytest.approx(0.9)
    assert scores["kept_apart_0.8"] == 0.0 and scores["kept_apart_0.95"] == 1.0


def test_one_bright_pixel_decides_its_pair():
    truth = three_squares()
    probability = np.where(truth, 0.95, 0.0)
    probability[5:15, 15] = 0.1  # the first line dark but for one pixel
    probability[9, 15] = 0.85
    probability[5:15, 26] = 0.2  # the second line dark throughout
    lines = line_probabilities(probability, truth)
    assert sorted(lines.pair_maxima.tolist()) == pytest.approx([0.2, 0.85])
    scores = line_scores([lines], thresholds=[0.7, 0.9])
    assert scores["pairs"] == 2 and scores["line_pixels"] == 24  # with each line's two end pixels, at 0
    assert scores["median_line_probability"] == pytest.approx(0.1)
    assert scores["kept_apart_0.7"] == 0.5 and scores["kept_apart_0.9"] == 1.0


def test_images_are_pooled_by_pair(merged_pair):
    probability, truth, _ = merged_pair
    dark = line_probabilities(np.where(truth, 0.9, 0.1), truth)
    bright = line_probabilities(probability, truth)
    scores = line_scores([dark, bright, bright], thresholds=[0.5])
    assert scores["pairs"] == 3 and scores["kept_apart_0.5"] == pytest.approx(1 / 3)
    assert scores["median_pair_maximum"] == pytest.approx(0.9)


def test_masks_without_touching_particles_are_a_clear_error():
    truth = np.zeros((20, 20), dtype=bool)
    truth[5:10, 5:10] = True
    with pytest.raises(ValueError, match="no touching particles"):
        line_scores([line_probabilities(truth.astype(float), truth)], thresholds=[0.5])
    with pytest.raises(ValueError, match="differ in shape"):
        line_probabilities(np.zeros((20, 21)), truth)


def test_command_line_scores_each_fold_and_pools_them(tmp_path, monkeypatch, merged_pair):
    probability, truth, _ = merged_pair
    calls = []

    def collect(dataset_dir, cv_dir, configs, overrides, folds):
        calls.append((configs, overrides, folds))
        return [
            HeldOutPrediction("bright", probability, None, truth, 2.0, fold=0),
            HeldOutPrediction("dark", np.where(truth, 0.9, 0.1).astype(np.float32), None, truth, 2.0, fold=1),
        ]

    monkeypatch.setattr(line_check, "collect_held_out_predictions", collect)
    line_check.main(
        ["--dataset_dir", str(tmp_path), "--cv_dir", str(tmp_path), "--config", "extra.json", "--set", "tta=dihedral",
         "--thresholds", "0.5", "--name", "tta"]
    )
    assert calls == [(["extra.json"], {"tta": "dihedral"}, None)]
    scores = json.loads((tmp_path / "line_check_tta.json").read_text())
    assert set(scores) == {"fold_0", "fold_1", "pooled"}
    assert scores["fold_0"]["kept_apart_0.5"] == 0.0 and scores["fold_1"]["kept_apart_0.5"] == 1.0
    assert scores["pooled"]["pairs"] == 2 and scores["pooled"]["kept_apart_0.5"] == 0.5
