"""The separation check: true masks with their lines closed, split again, guided by perfect separation outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dataset_helpers import write_labelled_dataset

from research.separation_check import (
    GUIDES,
    check_separation,
    close_separation_lines,
    main,
    split_with_guide,
    true_particle_sizes,
)


def squares_sharing_an_edge() -> np.ndarray:
    """Two 10x10 squares side by side, one background column between them: closed, one 10x21 rectangle."""
    mask = np.zeros((20, 31), dtype=bool)
    mask[5:15, 5:15] = True
    mask[5:15, 16:26] = True
    return mask


def test_closing_fills_the_line_and_keeps_every_particle_pixel():
    truth = squares_sharing_an_edge()
    closed = close_separation_lines(truth)
    assert closed[truth].all()
    assert closed[5:15, 15].all() and closed.sum() == truth.sum() + 10


def test_a_perfect_separation_output_splits_what_the_watershed_cannot():
    truth = squares_sharing_an_edge()
    assert split_with_guide(truth, "watershed").max() == 1  # a rectangle: one flat ridge, one marker
    for guide in ("band", "relative_border", "offsets", "lines_kept"):
        labels = split_with_guide(truth, guide)
        assert labels.max() == 2, guide
        assert {np.unique(labels[7:13, 7:13]).item(), np.unique(labels[7:13, 18:24]).item()} == {1, 2}


def test_check_scores_every_guide_against_the_true_particles():
    scores = check_separation([squares_sharing_an_edge()], progress=False)
    assert list(scores) == list(GUIDES)
    assert scores["watershed"]["f1"] == 0.0 and scores["watershed"]["count_error"] == pytest.approx(-0.5)
    assert scores["relative_border"]["f1"] == 1.0 and scores["lines_kept"]["count_error"] == 0.0


def test_true_particle_sizes_count_the_slivers_and_leave_them_out_of_the_median():
    mask = np.zeros((20, 40), dtype=bool)
    mask[0, 0:2] = True  # a 2 px sliver
    mask[0:3, 20:24] = True  # 12 px
    mask[5:15, 5:15] = True  # 100 px
    sizes = true_particle_sizes([mask], min_size_px=10)
    assert sizes["true_count"] == 3 and sizes["under_min_size"] == 1 and sizes["min_size_px"] == 10
    assert sizes["median_ecd_px"] == pytest.approx(np.sqrt(48 / np.pi))  # the 12 px particle, the middle of three
    assert sizes["measurable_median_ecd_px"] == pytest.approx((np.sqrt(48 / np.pi) + np.sqrt(400 / np.pi)) / 2)


def test_unknown_guide_is_a_clear_error():
    with pytest.raises(ValueError, match="guide must be one of"):
        split_with_guide(squares_sharing_an_edge(), "oracle")


def test_command_writes_the_scores_of_a_dataset(tmp_path):
    dataset = write_labelled_dataset(tmp_path / "data", count=2)
    output = tmp_path / "check.json"
    main(["--dataset_dir", str(dataset), "--output", str(output)])
    written = json.loads(output.read_text())
    assert written["images"] == 2 and set(written["scores"]) == set(GUIDES)
    assert written["scores"]["lines_kept"]["true_count"] > 0
    assert written["true_particles"]["true_count"] == written["scores"]["lines_kept"]["true_count"]
    assert 0.0 <= written["scores"]["watershed"]["f1"] <= written["scores"]["lines_kept"]["f1"] <= 1.0
