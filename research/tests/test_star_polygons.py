"""Star-convex polygon heads: targets, loss, particle step, and one fold through the bundle's workflows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from research import cv
from research.star_polygons import (
    DEFAULT_RAYS,
    MAX_RAY_PX,
    STARDIST_RAY_WEIGHT,
    LineWeightAndStarPolygonsd,
    StarPolygonLoss,
    StarPolygons,
    star_polygon_particles,
)
from research.warm_start import LoadMatchingWeights
from rformer_monai.particles.labelling import label_particles
from rformer_monai.workflows import InstanceEvaluationHandler

STAR_POLYGONS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "star_polygons.json"
WARM_START_CONFIG = STAR_POLYGONS_CONFIG.with_name("warm_start.json")
DISC_RADIUS_PX = 12


def touching_discs() -> np.ndarray:
    """Two discs of radius 12 px that touch along a one-pixel background line (the BAM convention)."""
    rows, columns = np.mgrid[:48, :72]
    left = (rows - 24) ** 2 + (columns - 23) ** 2 <= DISC_RADIUS_PX**2
    right = (rows - 24) ** 2 + (columns - 47) ** 2 <= DISC_RADIUS_PX**2
    mask = left | right
    mask[:, 35] = False  # the line between them
    return mask


def as_label(mask: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(mask[None], dtype=torch.float32)


def test_targets_hold_the_object_probability_and_the_rays_of_each_particle():
    mask = touching_discs()
    target = StarPolygons()(as_label(mask)).numpy()
    assert target.shape == (2 + DEFAULT_RAYS, *mask.shape)
    assert np.array_equal(target[0], mask)
    probability, rays = target[1], target[2:] * MAX_RAY_PX
    assert probability[~mask].max() == 0 and probability[mask].min() > 0
    assert probability[24, 23] == pytest.approx(1.0) and probability[24, 47] == pytest.approx(1.0)
    # from a disc's centre every ray ends at its border, never beyond the line into the neighbour
    assert np.allclose(rays[:, 24, 23], DISC_RADIUS_PX, atol=1.5)
    assert rays[0, 24, 23] <= 35 - 23 and rays[:, ~mask].max() == 0


def test_line_weights_come_before_the_polygon_targets():
    label = LineWeightAndStarPolygonsd(keys="label")({"label": as_label(touching_discs())})["label"]
    assert label.shape[0] == 3 + DEFAULT_RAYS  # mask, loss weights, object probability, rays
    assert label[1].max() > 1  # the loss weights peak on the line between the discs


def test_perfect_outputs_give_the_true_particles():
    mask = touching_discs()
    target = StarPolygons()(as_label(mask)).numpy()
    labels = star_polygon_particles(target[0], target[1:])
    truth = label_particles(mask)
    assert labels.max() == truth.max() == 2
    for particle in (1, 2):
        overlap = np.bincount(labels[truth == particle], minlength=3)[1:]
        assert overlap.max() / (truth == particle).sum() > 0.9  # each disc drawn as one polygon of its own


def test_particle_step_drops_small_polygons_without_merging_touching_ones():
    target = StarPolygons()(as_label(touching_discs())).numpy()
    assert star_polygon_particles(target[0], target[1:], min_size_px=10_000).max() == 0
    assert star_polygon_particles(target[0], target[1:], min_size_px=10).max() == 2


def test_within_mask_the_outlines_come_from_the_mask_and_the_polygons_only_part_it():
    mask = touching_discs()
    target = StarPolygons()(as_label(mask)).numpy()
    outputs = target[1:].copy()
    outputs[1:] *= 0.6  # polygons well inside their particles
    truth = label_particles(mask)
    shrunk = star_polygon_particles(target[0], outputs)
    assert shrunk.max() == 2 and np.count_nonzero(shrunk) < 0.5 * mask.sum()
    grown = star_polygon_particles(target[0], outputs, within_mask=True)
    assert grown.max() == 2 and np.array_equal(grown > 0, mask)
    for particle in (1, 2):
        assert len(np.unique(grown[truth == particle])) == 1  # each disc one particle, the line between kept
    outputs[0, :, 36:] = 0  # no polygon proposed in the right disc: the mask keeps it as a particle of its own
    orphan = star_polygon_particles(target[0], outputs, within_mask=True)
    assert orphan.max() == 2 and np.array_equal(orphan > 0, mask)


def test_particle_step_names_a_wrong_shape():
    with pytest.raises(ValueError, match="rays"):
        star_polygon_particles(np.zeros((8, 8)), np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="differ in size"):
        star_polygon_particles(np.zeros((8, 9)), np.zeros((5, 8, 8)))


def test_ray_loss_is_zero_at_the_target_and_blind_to_the_background():
    mask = touching_discs()
    label = LineWeightAndStarPolygonsd(keys="label")({"label": as_label(mask)})["label"][None]
    target_rays = label[:, 3:].clamp(1e-4, 1 - 1e-4)
    logits = torch.zeros(1, 2 + DEFAULT_RAYS, *mask.shape)
    logits[:, 2:] = torch.logit(target_rays)
    loss = StarPolygonLoss(object_weight=0.0)
    assert loss.separation_loss(logits, label).item() == pytest.approx(0.0, abs=1e-4)
    wrong_background = logits.clone()
    wrong_background[:, 2:, torch.from_numpy(~mask)] = 5.0
    assert loss.separation_loss(wrong_background, label).item() == pytest.approx(0.0, abs=1e-4)
    wrong_inside = logits.clone()
    wrong_inside[:, 2:, torch.from_numpy(mask)] = 5.0
    assert loss.separation_loss(wrong_inside, label).item() > 0.1


def test_ray_loss_counts_pixels_of_ray_error_at_stardists_weight():
    mask = touching_discs()
    label = LineWeightAndStarPolygonsd(keys="label")({"label": as_label(mask)})["label"][None]
    one_px_long = torch.zeros(1, 2 + DEFAULT_RAYS, *mask.shape)
    one_px_long[:, 2:] = torch.logit(label[:, 3:] + 1.0 / MAX_RAY_PX)  # every ray 1 px too long
    loss = StarPolygonLoss(object_weight=0.0)
    assert loss.ray_weight == STARDIST_RAY_WEIGHT
    assert loss.separation_loss(one_px_long, label).item() == pytest.approx(STARDIST_RAY_WEIGHT, rel=1e-3)


def test_instance_evaluation_uses_the_particle_step(tmp_path):
    mask = touching_discs()
    target = StarPolygons()(as_label(mask))
    meta = {"filename_or_obj": "discs.tif", "pixel_size_nm": 2.0, "data_bar_rows": 0}
    sample = {"pred": MetaTensor(target[:1], meta=meta), "label": as_label(mask), "pred_separation": target[1:]}
    handler = InstanceEvaluationHandler(tmp_path, particle_step=star_polygon_particles)
    engine = Engine(lambda engine, batch: [sample])
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    pooled = json.loads((tmp_path / "instance_metrics.json").read_text())["pooled"]
    assert pooled["tp"] == pooled["true_count"] == 2 and pooled["fp"] == 0
    del sample["pred_separation"]
    with pytest.raises(ValueError, match="separation outputs"):
        engine.run([0], max_epochs=1)


@pytest.mark.slow
def test_a_fold_trains_and_scores_with_star_polygons(tiny_dataset, tiny_overrides, tmp_path, monkeypatch):
    output = tmp_path / "cv"
    configs = [STAR_POLYGONS_CONFIG]
    overrides = {**tiny_overrides, "max_epochs": 1}
    cv.train_fold(0, str(tiny_dataset), output, configs, overrides)
    cv.evaluate_fold(0, str(tiny_dataset), output, configs, overrides)
    instances = json.loads((output / "fold_0" / "instance_metrics.json").read_text())
    assert instances["pooled"]["true_count"] > 0
    assert 0.0 <= instances["pooled"]["f1"] <= 1.0
    # the same fold again, started from the first run's model
    warm = [*configs, WARM_START_CONFIG]
    started_from = []
    attach = LoadMatchingWeights.attach
    monkeypatch.setattr(LoadMatchingWeights, "attach", lambda self, engine: (started_from.append(self.checkpoint), attach(self, engine)))
    cv.train_fold(0, str(tiny_dataset), tmp_path / "warm", warm, {**overrides, "warm_start_cv_dir": str(output)})
    assert started_from == [str(output / "fold_0" / "model.pt")]
    cost = cv.network_cost(warm, {key: value for key, value in overrides.items() if key.startswith("network_def")})
    assert cost["network_def"]["out_channels"] == 2 + DEFAULT_RAYS
