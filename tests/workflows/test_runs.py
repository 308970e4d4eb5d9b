"""Run folders, the weights a run starts from and its recipe, its saved settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rformer_monai.networks import CheckpointError
from rformer_monai.workflows import (
    LoadPretrainedWeights,
    new_run_folder,
    pretrained_weights,
    save_run_settings,
    training_recipe,
)

FROM_SCRATCH = {"max_epochs": 50, "learning_rate": 1e-3, "lr_schedule": "cosine"}
FINE_TUNE = {"max_epochs": 6, "learning_rate": 1e-4, "lr_schedule": "cosine"}


def test_new_run_folders_never_coincide(tmp_path):
    folders = [new_run_folder(tmp_path / "runs") for _ in range(3)]  # within the same second
    assert len(set(folders)) == 3
    assert all(Path(folder).is_dir() and Path(folder).parent == tmp_path / "runs" for folder in folders)


def test_a_resumed_run_continues_in_its_folder(tmp_path):
    checkpoint = tmp_path / "runs" / "20261206-120000" / "checkpoints" / "checkpoint_epoch=2.pt"
    assert new_run_folder(tmp_path / "runs", str(checkpoint)) == str(tmp_path / "runs" / "20261206-120000")
    elsewhere = new_run_folder(tmp_path / "runs", str(tmp_path / "loose.pt"))  # not in a run folder: a new one
    assert Path(elsewhere).parent == tmp_path / "runs"


@pytest.mark.parametrize(
    ("pretrained", "dataset_dir", "expected"),
    [
        ("models/model.pt", "data", "models/model.pt"),
        ("models/model.pt", None, None),  # the synthetic quick-start: from scratch
        (None, "data", None),
        ("null", "data", None),  # --pretrained null
        ("None", "data", None),
    ],
)
def test_pretrained_weights(pretrained, dataset_dir, expected):
    assert pretrained_weights(pretrained, dataset_dir) == expected


def test_training_recipe_follows_the_initial_weights():
    assert training_recipe("models/model.pt", FROM_SCRATCH, FINE_TUNE) == FINE_TUNE
    assert training_recipe(None, FROM_SCRATCH, FINE_TUNE) == FROM_SCRATCH
    with pytest.raises(ValueError, match="fine_tune must give .* lacks lr_schedule"):
        training_recipe("models/model.pt", FROM_SCRATCH, {"max_epochs": 1, "learning_rate": 1e-4})


def test_run_settings_are_saved_as_json(tmp_path):
    path = save_run_settings(tmp_path / "run", {"max_epochs": 8, "roi_size": (256, 256), "device": torch.device("cpu")})
    assert json.loads(path.read_text()) == {"max_epochs": 8, "roi_size": [256, 256], "device": "cpu"}


def test_missing_pretrained_weights_say_how_to_train_from_scratch(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found.*--pretrained null"):
        LoadPretrainedWeights(torch.nn.Linear(2, 1), str(tmp_path / "model.pt"))
    LoadPretrainedWeights(torch.nn.Linear(2, 1), None).attach(None)  # from scratch: nothing to do


def test_pretrained_weights_of_another_network_say_how_to_train_from_scratch(tmp_path):
    torch.save(torch.nn.Linear(3, 1).state_dict(), tmp_path / "model.pt")
    handler = LoadPretrainedWeights(torch.nn.Linear(2, 1), str(tmp_path / "model.pt"))
    with pytest.raises(CheckpointError, match="weights do not fit.*--pretrained null"):
        handler.attach(None)


def test_a_checkpoint_without_a_best_score_still_resumes(tmp_path, caplog):
    """Training checkpoints written before the best score travelled in them resume, the tracking afresh."""
    from rformer_monai.workflows import BestModelSaver, ResumeFromCheckpoint

    network = torch.nn.Linear(2, 1)
    torch.save({"model": network.state_dict(), "trainer": {"epoch": 1}}, tmp_path / "old.pt")
    best = BestModelSaver(str(tmp_path / "run"), {"model": network})
    handler = ResumeFromCheckpoint(
        str(tmp_path / "old.pt"), {"model": network, "best_model": best}, optional_keys=["best_model"]
    )
    assert "best_model" not in handler.load_dict
    assert "holds no 'best_model'" in caplog.text
    with pytest.raises(CheckpointError, match="holds no best_model"):
        ResumeFromCheckpoint(str(tmp_path / "old.pt"), {"model": network, "best_model": best})


def test_the_best_score_round_trips_through_a_state_dict(tmp_path):
    from rformer_monai.workflows import BestModelSaver

    saver = BestModelSaver(str(tmp_path), {"model": torch.nn.Linear(2, 1)})
    assert saver.best_score is None and saver.state_dict() == {"_saved": [], "best_metric_epoch": -1}
    saver.load_state_dict({"_saved": [(0.93, "model.pt")]})  # as older versions would have had it
    assert saver.best_score == 0.93
    assert saver.state_dict()["_saved"] == [(0.93, "model.pt")]
