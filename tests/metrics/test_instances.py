"""Tests for instance-level particle scores (rformer_monai.metrics.instances)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rformer_monai.metrics import (
    INSTANCE_SCORE_NAMES,
    InstanceMatches,
    instance_scores,
    match_instances,
    pool_matches,
    recall_by_size,
    scores_from_matches,
)
from rformer_monai.particles.labelling import label_particles

SHAPE = (40, 60)


def squares(
    *corners: tuple[int, int], side: int = 10, width: int | None = None, labels: tuple[int, ...] | None = None
) -> np.ndarray:
    """A label image with one side x width rectangle per top-left corner."""
    image = np.zeros(SHAPE, dtype=np.int32)
    for index, (row, column) in enumerate(corners):
        image[row : row + side, column : column + (width or side)] = labels[index] if labels else index + 1
    return image


def test_identical_instances_score_perfectly() -> None:
    truth = squares((2, 2), (20, 30))
    prediction = squares((2, 2), (20, 30), labels=(900, 5))  # any label values
    scores = instance_scores(prediction, truth)
    assert list(scores) == list(INSTANCE_SCORE_NAMES)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 0, 0)
    for name in ("f1", "precision", "recall", "pq", "sq", "rq", "mean_iou"):
        assert scores[name] == 1.0
    assert scores["count_error"] == 0.0 and scores["median_ecd_error"] == 0.0 and scores["ks_distance"] == 0.0


def test_shifted_missed_and_spurious_particles() -> None:
    truth = squares((2, 2), (20, 30))
    prediction = squares((2, 4), (25, 35))  # shifted by 2 columns: IoU 80/120; the other misses
    matches = match_instances(prediction, truth)
    assert (matches.tp, matches.fp, matches.fn) == (1, 1, 1)
    np.testing.assert_allclose(matches.matched_iou, [2 / 3])
    scores = scores_from_matches(matches)
    assert scores["precision"] == scores["recall"] == scores["f1"] == scores["rq"] == 0.5
    assert scores["sq"] == pytest.approx(2 / 3)
    assert scores["pq"] == pytest.approx(1 / 3)  # sum IoU / (tp + fp/2 + fn/2)
    # the missed square overlaps the spurious one by 5 x 5 px: IoU 25/175
    assert scores["mean_iou"] == pytest.approx((2 / 3 + 25 / 175) / 2)
    assert scores["count_error"] == 0.0


def test_split_particle_is_not_matched() -> None:
    truth = squares((5, 5), width=20)  # 10 x 20
    prediction = squares((5, 5), (5, 15))  # two 10 x 10 halves: IoU exactly 0.5 each
    scores = instance_scores(prediction, truth)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (0, 2, 1)
    assert scores["fn_merged"] == 0  # split, not merged
    assert scores["f1"] == 0.0 and scores["pq"] == 0.0
    assert scores["count_error"] == 1.0
    assert scores["mean_iou"] == 0.5


def test_merged_particles_are_not_matched() -> None:
    truth = squares((5, 5), (5, 15))
    prediction = squares((5, 5), width=20)
    scores = instance_scores(prediction, truth)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (0, 1, 2)
    assert scores["fn_merged"] == 2
    assert scores["count_error"] == -0.5
    assert scores["median_ecd_error"] == pytest.approx(math.sqrt(2) - 1)  # twice the area


def test_merges_and_unsegmented_particles_are_told_apart_from_other_misses() -> None:
    # particle 1 (10 x 10) and its 4 x 4 neighbour 3 lie in one prediction of 10 x 14 px: 1 still matches
    # (IoU 100/140), 3 is missed and merged; 2 is not predicted at all; one prediction covers exactly half
    # of particles 4 and 5 each, which is not more than half: missed, not merged
    truth = squares((2, 2), (20, 30))
    truth[2:6, 12:16] = 3
    truth[26:36, 2:12] = 4
    truth[26:36, 14:18] = 5
    prediction = np.zeros(SHAPE, dtype=np.int32)
    prediction[2:12, 2:16] = 1
    prediction[31:36, 2:18] = 2
    matches = match_instances(prediction, truth)
    np.testing.assert_array_equal(matches.true_merged, [True, False, True, False, False])
    np.testing.assert_array_equal(matches.true_found, [True, False, False, False, False])
    scores = scores_from_matches(matches)
    assert (scores["tp"], scores["fn"], scores["fn_merged"]) == (1, 4, 1)
    assert recall_by_size(matches, classes=1)[0]["missed_merged"] == 1
    assert scores_from_matches(pool_matches([matches, match_instances(truth, truth)]))["fn_merged"] == 1
    # of the missed ones, 2 lies outside every prediction; 4 and 5 lie half inside one: found with the wrong shape
    np.testing.assert_array_equal(matches.true_unsegmented, [False, True, False, False, False])
    assert scores["fn_unsegmented"] == 1 == recall_by_size(matches, classes=1)[0]["missed_unsegmented"]
    assert scores_from_matches(pool_matches([matches, match_instances(truth, truth)]))["fn_unsegmented"] == 1


def test_size_errors_on_known_areas() -> None:
    truth = squares((10, 10))  # 100 px
    prediction = squares((5, 5), side=20)  # 400 px, contains the truth: IoU 0.25
    scores = instance_scores(prediction, truth)
    assert scores["median_ecd_error"] == pytest.approx(1.0)  # ECD scales with sqrt(area)
    assert scores["ks_distance"] == 1.0
    matches = match_instances(prediction, truth, pixel_size_nm=2.0)
    np.testing.assert_allclose(matches.true_ecd, [2.0 * math.sqrt(400 / math.pi)])


def test_empty_cases() -> None:
    empty = np.zeros(SHAPE, dtype=np.int32)
    both = instance_scores(empty, empty)
    assert both["f1"] == both["pq"] == both["mean_iou"] == 1.0
    assert both["count_error"] == 0.0 and both["ks_distance"] == 0.0
    missed = instance_scores(empty, squares((2, 2)))
    assert missed["f1"] == missed["precision"] == missed["recall"] == missed["pq"] == 0.0
    assert missed["count_error"] == -1.0 and missed["ks_distance"] == 1.0
    assert math.isnan(missed["median_ecd_error"])
    spurious = instance_scores(squares((2, 2)), empty)
    assert spurious["f1"] == 0.0 and spurious["mean_iou"] == 0.0
    assert math.isnan(spurious["count_error"])


def test_bool_masks_are_labelled_four_connected() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:2, 0:2] = True
    mask[2:4, 2:4] = True  # touches the first only diagonally: a second particle
    assert label_particles(mask).max() == 2
    assert instance_scores(mask, label_particles(mask))["tp"] == 2


def test_pooling_counts_every_particle_once() -> None:
    first = match_instances(squares((2, 4), (25, 45)), squares((2, 2), (20, 30)))
    second = match_instances(squares((2, 2)), squares((2, 2)))
    pooled = pool_matches([first, second])
    assert (pooled.tp, pooled.fp, pooled.fn) == (2, 1, 1)
    assert pooled.pred_count == pooled.true_count == 3
    assert scores_from_matches(pooled)["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert scores_from_matches(first + second) == scores_from_matches(pooled)
    strict = match_instances(squares((2, 2)), squares((2, 2)), iou_threshold=0.75)
    with pytest.raises(ValueError, match="iou_threshold must agree"):
        first + strict
    with pytest.raises(ValueError, match="at least one"):
        pool_matches([])


def test_higher_threshold_rejects_weak_matches() -> None:
    truth = squares((2, 2))
    prediction = squares((2, 4))  # IoU 2/3
    assert match_instances(prediction, truth, iou_threshold=0.5).tp == 1
    assert match_instances(prediction, truth, iou_threshold=0.7).tp == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iou_threshold": 0.4}, "iou_threshold"),
        ({"iou_threshold": 1.0}, "iou_threshold"),
        ({"pred_labels": np.zeros((3, 3), dtype=np.int32)}, "same shape"),
        ({"pred_labels": np.zeros(SHAPE, dtype=np.float32)}, "integer labels"),
        ({"true_labels": -np.ones(SHAPE, dtype=np.int32)}, "non-negative"),
        ({"pixel_size_nm": -1.0}, "pixel_size_nm"),
    ],
)
def test_match_rejects_bad_input(kwargs: dict, message: str) -> None:
    arguments = {"pred_labels": squares((2, 2)), "true_labels": squares((2, 2))}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        match_instances(**arguments)


def test_recall_by_size_finds_where_small_particles_are_lost() -> None:
    # true squares of sides 2, 4, 6 and 8 px, two of each; the prediction has the two largest sizes only
    corners = [(2, 2), (2, 12), (2, 22), (2, 34), (20, 2), (20, 12), (20, 22), (20, 34)]
    sides = [2, 4, 6, 8, 2, 4, 6, 8]
    truth = np.zeros(SHAPE, dtype=np.int32)
    for label, ((row, column), side) in enumerate(zip(corners, sides), start=1):
        truth[row : row + side, column : column + side] = label
    prediction = np.where(np.isin(truth, [3, 4, 7, 8]), truth, 0)
    rows = recall_by_size(match_instances(prediction, truth, pixel_size_nm=2.0))
    assert [row["recall"] for row in rows] == [0.0, 0.0, 1.0, 1.0]
    assert [row["true_count"] for row in rows] == [2, 2, 2, 2]
    assert [row["found"] for row in rows] == [0, 0, 2, 2]
    # ECD in nm: 2 nm per px, a square of side s px has area s^2 px
    np.testing.assert_allclose([row["ecd_min"] for row in rows], [2 * math.sqrt(4 * s**2 / math.pi) for s in sides[:4]])


def test_recall_by_size_edge_cases() -> None:
    one_size = squares((2, 2), (20, 30))
    rows = recall_by_size(match_instances(squares((2, 2)), one_size), classes=4)
    assert len(rows) == 1 and rows[0]["true_count"] == 2 and rows[0]["recall"] == 0.5
    assert recall_by_size(match_instances(one_size, np.zeros(SHAPE, dtype=np.int32))) == []
    with pytest.raises(ValueError, match="classes"):
        recall_by_size(match_instances(one_size, one_size), classes=0)


def test_matches_dataclass_is_frozen() -> None:
    matches = match_instances(squares((2, 2)), squares((2, 2)))
    assert isinstance(matches, InstanceMatches)
    with pytest.raises(AttributeError):
        matches.tp = 3  # type: ignore[misc]
