"""The fit check: training against held-out particle scores, and the worst merges drawn."""

from __future__ import annotations

import json

import numpy as np
import pytest

from research import cv, fit_check
from rformer_monai.particles.labelling import label_particles


def three_touching_squares() -> np.ndarray:
    truth = np.zeros((40, 60), dtype=bool)
    for left in (5, 21, 37):
        truth[10:25, left : left + 15] = True  # columns 20 and 36 stay background: three particles
    return truth


def test_a_prediction_over_three_true_particles_is_one_merge_of_three():
    truth = three_touching_squares()
    predicted = np.zeros(truth.shape, dtype=np.int32)
    predicted[9:26, 4:53] = 1  # one particle over all three
    predicted[30:35, 5:10] = 2  # a false particle elsewhere
    merges = fit_check.merges_of(np.random.default_rng(0).random(truth.shape), predicted, truth, "squares")
    assert [merge.swallowed for merge in merges] == [3]
    merge = merges[0]
    assert merge.prediction.shape == merge.image.shape == merge.truth.shape and merge.prediction.any()
    assert merge.truth.max() == 3 and merge.name == "squares"


def test_particles_predicted_apart_are_no_merge():
    truth = three_touching_squares()
    assert fit_check.merges_of(truth.astype(float), label_particles(truth), truth, "squares") == []
    assert fit_check.merges_of(truth.astype(float), np.zeros(truth.shape, dtype=np.int32), truth, "squares") == []


def test_draw_merges_writes_one_picture(tmp_path):
    truth = three_touching_squares()
    one_over_all = np.zeros(truth.shape, dtype=np.int32)
    one_over_all[5:30, 0:60] = 1
    merges = fit_check.merges_of(truth.astype(float), one_over_all, truth, "squares")
    assert len(merges) == 1
    assert fit_check.draw_merges(merges, tmp_path / "merges.png").stat().st_size > 0


@pytest.mark.slow
def test_fit_check_scores_a_fold_on_its_training_images(tiny_dataset, tiny_overrides, tmp_path, capsys):
    output = tmp_path / "cv"
    cv.train_fold(0, str(tiny_dataset), output, overrides={**tiny_overrides, "max_epochs": 1})
    cv.evaluate_fold(0, str(tiny_dataset), output, overrides=tiny_overrides)
    sets = [f"--set={key}={json.dumps(value)}" for key, value in tiny_overrides.items()]
    assert fit_check.main(["--dataset_dir", str(tiny_dataset), "--cv_dir", str(output), *sets]) == 0
    on_training = json.loads((output / "fold_0" / "on_training" / "instance_metrics.json").read_text())
    assert len(on_training["per_image"]) == 2  # the two training images of a 2-fold split of four
    rows = json.loads((output / "fit_check.json").read_text())
    assert rows[0]["training"]["true_count"] == on_training["pooled"]["true_count"]
    assert (output / "worst_merges.png").is_file()
    assert "| 0 |" in capsys.readouterr().out
