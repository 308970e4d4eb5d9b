"""The particle handlers cut agglomerates along a network's separation output where the samples carry one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from rformer_monai.particles import cut_along_separation
from rformer_monai.workflows import InstanceEvaluationHandler


def run_handler(handler, sample: dict) -> None:
    engine = Engine(lambda engine, batch: [sample])
    handler.attach(engine)
    engine.run([0], max_epochs=1)


def sample_of(probability, truth=None, separation=None, source="pair.tif") -> dict:
    meta = {"filename_or_obj": source, "pixel_size_nm": 2.0, "data_bar_rows": 0}
    sample = {"pred": MetaTensor(torch.as_tensor(probability[None]), meta=meta)}
    if truth is not None:
        sample["label"] = torch.as_tensor(truth[None], dtype=torch.float32)
    if separation is not None:
        sample["pred_separation"] = MetaTensor(torch.as_tensor(separation[None]), meta=meta)
    return sample


@pytest.mark.parametrize("with_separation, expected_f1", [(False, 0.0), (True, 1.0)])
def test_instance_evaluation_splits_along_separation(tmp_path, merged_pair, with_separation, expected_f1):
    probability, truth, separation = merged_pair
    handler = InstanceEvaluationHandler(tmp_path)
    run_handler(handler, sample_of(probability, truth, separation if with_separation else None))
    report = json.loads((tmp_path / "instance_metrics.json").read_text())
    assert report["pooled"]["f1"] == pytest.approx(expected_f1)
    by_size = report["recall_by_size"]
    assert sum(row["true_count"] for row in by_size) == report["pooled"]["true_count"] == 2
    assert sum(row["found"] for row in by_size) == report["pooled"]["tp"]
    # without the separation output both particles are lost to one merged prediction
    assert report["pooled"]["fn_merged"] == sum(row["missed_merged"] for row in by_size) == 2 - 2 * expected_f1
    assert report["ecd_unit"] == "nm"


def test_instance_evaluation_scores_the_measurable_particles_apart(tmp_path, merged_pair):
    """A 2 px sliver of the truth that no prediction keeps counts against the scores, not against those of
    the particles of at least the particle step's smallest size."""
    probability, truth, separation = merged_pair
    truth[0, 0:2] = True
    handler = InstanceEvaluationHandler(tmp_path, separation={"min_size_px": 5})
    run_handler(handler, sample_of(probability, truth, separation))
    report = json.loads((tmp_path / "instance_metrics.json").read_text())
    assert report["pooled"]["true_count"] == 3 and report["pooled"]["f1"] == pytest.approx(0.8)
    assert report["measurable"]["min_size_px"] == 5
    assert report["measurable"]["pooled"]["true_count"] == 2 and report["measurable"]["pooled"]["f1"] == pytest.approx(1.0)


def test_cut_along_separation():
    probability = np.full((2, 2), 0.8)
    assert np.allclose(cut_along_separation(probability, np.array([[0.0, 0.5], [1.0, 0.25]])), [[0.8, 0.4], [0.0, 0.6]])
    assert np.array_equal(cut_along_separation(probability, None), probability)
    with pytest.raises(ValueError, match="shape"):
        cut_along_separation(probability, np.zeros((3, 2)))
