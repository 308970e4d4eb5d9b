"""Flow-field heads: targets, loss, particle step, and one fold through the bundle's workflows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from research import cv
from research.flow_fields import (
    FlowFieldLoss,
    FlowFields,
    LineWeightAndFlowFieldsd,
    diffusion_flows,
    flow_particles,
    follow_flows,
)
from rformer_monai.particles.labelling import label_particles

FLOW_FIELDS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "flow_fields.json"
LEFT_CENTRE, RIGHT_CENTRE = (24, 23), (24, 47)


def touching_discs() -> np.ndarray:
    """Two discs of radius 12 px that touch along a one-pixel background line (the BAM convention)."""
    rows, columns = np.mgrid[:48, :72]
    mask = np.zeros(rows.shape, dtype=bool)
    for row, column in (LEFT_CENTRE, RIGHT_CENTRE):
        mask |= (rows - row) ** 2 + (columns - column) ** 2 <= 12**2
    mask[:, 35] = False
    return mask


def as_label(mask: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(mask[None], dtype=torch.float32)


def test_flows_are_unit_vectors_that_point_back_to_the_particle_centre():
    mask = touching_discs()
    flows = diffusion_flows(label_particles(mask))
    assert np.abs(flows[:, ~mask]).max() == 0
    lengths = np.hypot(*flows[:, mask])
    assert np.allclose(lengths[lengths > 0], 1.0, atol=1e-5)
    rows, columns = np.nonzero(mask)
    centre_column = np.where(columns < 35, LEFT_CENTRE[1], RIGHT_CENTRE[1])
    away = np.stack([rows - LEFT_CENTRE[0], columns - centre_column]).astype(float)
    far = np.hypot(*away) > 3
    # the flows point up the heat, towards the centre: against the offset from it
    assert np.mean((flows[:, rows, columns] * away)[:, far].sum(axis=0) < 0) > 0.95


def test_targets_map_the_flows_to_the_unit_interval_after_the_line_weights():
    mask = touching_discs()
    target = FlowFields()(as_label(mask)).numpy()
    assert target.shape == (3, *mask.shape) and np.array_equal(target[0], mask)
    assert target[1:].min() >= 0 and target[1:].max() <= 1 and np.all(target[1:, ~mask] == 0.5)
    label = LineWeightAndFlowFieldsd(keys="label")({"label": as_label(mask)})["label"]
    assert label.shape[0] == 4 and label[1].max() > 1  # mask, loss weights, two flows


def test_following_the_flows_gathers_each_particle_at_its_centre():
    mask = touching_discs()
    ends = follow_flows(diffusion_flows(label_particles(mask)), mask)
    columns = np.nonzero(mask)[1]
    for side, centre in ((columns < 35, LEFT_CENTRE), (columns > 35, RIGHT_CENTRE)):
        assert np.abs(ends[side] - centre).max() <= 2


def test_perfect_outputs_give_the_true_particles():
    mask = touching_discs()
    target = FlowFields()(as_label(mask)).numpy()
    labels = flow_particles(target[0], target[1:])
    truth = label_particles(mask)
    found = [np.unique(labels[truth == particle]) for particle in (1, 2)]
    assert labels.max() == 2 and [f.tolist() for f in found] in ([[1], [2]], [[2], [1]])  # each disc whole, alone


def test_particles_whose_flows_disagree_with_their_outline_are_dropped():
    mask = touching_discs()
    target = FlowFields()(as_label(mask)).numpy()
    scrambled = target[1:].copy()
    left = mask & (np.arange(mask.shape[1]) < 35)
    scrambled[:, left] = 1.0 - scrambled[:, left]  # the left disc's flows point outwards: it spreads apart
    assert flow_particles(target[0], scrambled, flow_error=0.4).max() <= 1
    assert flow_particles(target[0], target[1:], min_size_px=10_000).max() == 0


def test_particle_step_names_a_wrong_shape():
    with pytest.raises(ValueError, match="H, W"):
        flow_particles(np.zeros((8, 8)), np.zeros((3, 8, 8)))


def test_flow_loss_is_zero_at_the_target_and_counts_the_background():
    mask = touching_discs()
    label = LineWeightAndFlowFieldsd(keys="label")({"label": as_label(mask)})["label"][None]
    logits = torch.zeros(1, 3, *mask.shape)
    logits[:, 1:] = torch.logit(label[:, 2:].clamp(1e-6, 1 - 1e-6))
    loss = FlowFieldLoss()
    assert loss.separation_loss(logits, label).item() == pytest.approx(0.0, abs=1e-6)
    logits[:, 1:, torch.from_numpy(~mask)] = 3.0
    assert loss.separation_loss(logits, label).item() > 0.05


@pytest.mark.slow
def test_a_fold_trains_and_scores_with_flow_fields(tiny_dataset, tiny_overrides, tmp_path):
    output = tmp_path / "cv"
    overrides = {**tiny_overrides, "max_epochs": 1}
    cv.train_fold(0, str(tiny_dataset), output, [FLOW_FIELDS_CONFIG], overrides)
    cv.evaluate_fold(0, str(tiny_dataset), output, [FLOW_FIELDS_CONFIG], overrides)
    instances = json.loads((output / "fold_0" / "instance_metrics.json").read_text())
    assert instances["pooled"]["true_count"] > 0 and 0.0 <= instances["pooled"]["f1"] <= 1.0
