"""Training on one's own annotations by configuration alone: a fine-tune from the bundle's weights by default,
every run in its own folder (the shipped models/model.pt never replaced), the best score kept across a resume."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import torch
from dataset_helpers import write_labelled_dataset
from monai.bundle import ConfigWorkflow
from tiny_bundle_network import BUNDLE, TINY_NETWORK, TINY_RUN, tiny_network

from rformer_monai.networks import read_checkpoint

TRAIN = BUNDLE / "configs" / "train.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train(**overrides) -> ConfigWorkflow:
    workflow = ConfigWorkflow(config_file=str(TRAIN), workflow_type="train", logging_file=None, **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def _tiny_bundle(root: Path) -> Path:
    """A bundle folder whose shipped ``models/model.pt`` holds the tiny network's seeded weights."""
    (root / "models").mkdir(parents=True)
    torch.save(tiny_network(TRAIN, seed=3).state_dict(), root / "models" / "model.pt")
    return root


def test_a_run_on_a_dataset_fine_tunes_the_shipped_weights_and_writes_only_to_its_folder(tmp_path):
    bundle = _tiny_bundle(tmp_path / "bundle")
    shipped = bundle / "models" / "model.pt"
    shipped_sha256 = _sha256(shipped)
    dataset = write_labelled_dataset(tmp_path / "data")
    run = tmp_path / "run"
    tiny_run = {key: value for key, value in TINY_RUN.items() if key != "pretrained"}  # the default: fine-tune
    workflow = _train(
        **TINY_NETWORK,
        **tiny_run,
        bundle_root=str(bundle),
        dataset_dir=str(dataset),
        ckpt_dir=str(run),
        num_folds=2,
        crops_per_image=2,
        **{"fine_tune#max_epochs": 1, "fine_tune#learning_rate": 1e-12},  # the weights stay those loaded
    )
    assert _sha256(shipped) == shipped_sha256
    # nothing else written in the bundle: its runs/ (output_dir, checked writable before training) stays empty
    assert sorted(path.name for path in bundle.iterdir()) == ["models", "runs"]
    assert not any((bundle / "runs").iterdir())
    assert sorted(path.name for path in (bundle / "models").iterdir()) == ["model.pt"]
    names = {path.name for path in run.iterdir()}
    assert {"model.pt", "history.csv", "checkpoints", "settings.json"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    settings = json.loads((run / "settings.json").read_text())
    assert settings["initial_weights"] == str(shipped)
    assert (settings["max_epochs"], settings["learning_rate"]) == (1, 1e-12)
    assert workflow.parser.get_parsed_content("max_epochs") == 1
    trained, initial = torch.load(run / "model.pt", weights_only=True), torch.load(shipped, weights_only=True)
    convolutions = [name for name in initial if name.endswith("weight") and initial[name].ndim == 4]
    for name in convolutions:  # started from the shipped weights (the rate leaves them where they were)
        torch.testing.assert_close(trained[name], initial[name], rtol=0, atol=1e-6, msg=name)


def test_from_scratch_is_one_setting_and_uses_the_recipe_of_the_shipped_weights(tmp_path):
    bundle = _tiny_bundle(tmp_path / "bundle")
    workflow = ConfigWorkflow(
        config_file=str(TRAIN),
        workflow_type="train",
        logging_file=None,
        **TINY_NETWORK,
        **{**TINY_RUN, "pretrained": "null"},  # as the command line passes --pretrained null
        bundle_root=str(bundle),
        dataset_dir=str(write_labelled_dataset(tmp_path / "data")),
    )
    workflow.initialize()
    parsed = workflow.parser.get_parsed_content
    assert parsed("initial_weights") is None
    assert (parsed("max_epochs"), parsed("learning_rate"), parsed("lr_schedule")) == (50, 1e-3, "cosine")
    assert parsed("intensity") == "unit"
    (run,) = (bundle / "runs").iterdir()  # no ckpt_dir given: a new run folder under runs/
    assert Path(parsed("ckpt_dir")) == run


def test_two_runs_without_ckpt_dir_get_two_folders(tmp_path):
    dataset = write_labelled_dataset(tmp_path / "data")
    folders = []
    for _ in range(2):
        workflow = ConfigWorkflow(
            config_file=str(TRAIN),
            workflow_type="train",
            logging_file=None,
            **TINY_NETWORK,
            **TINY_RUN,
            bundle_root=str(tmp_path / "bundle"),
            dataset_dir=str(dataset),
        )
        workflow.initialize()
        folders.append(workflow.parser.get_parsed_content("ckpt_dir"))
    assert len(set(folders)) == 2
    assert all(Path(folder).parent == tmp_path / "bundle" / "runs" for folder in folders)


def test_a_resumed_run_keeps_the_best_model_when_its_validation_scores_worse(tmp_path):
    dataset = write_labelled_dataset(tmp_path / "data")
    run = tmp_path / "bundle" / "runs" / "first"
    overrides = {
        **TINY_NETWORK,
        **TINY_RUN,
        "bundle_root": str(tmp_path / "bundle"),
        "dataset_dir": str(dataset),
        "ckpt_dir": str(run),
        "num_folds": 2,
        "crops_per_image": 2,
        "val_interval": 1,
    }
    _train(**overrides, max_epochs=2)
    best_sha256 = _sha256(run / "model.pt")
    checkpoint = run / "checkpoints" / "checkpoint_final.pt"
    ((best_score, best_file),) = read_checkpoint(checkpoint)["best_model"]["_saved"]
    assert best_file == "model.pt"

    # one more epoch whose validation predicts no particle at all: a Dice of 0, worse than any saved best
    no_particles = {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
            {"_target_": "rformer_monai.transforms.SplitSeparationd", "keys": "pred"},
            {"_target_": "AsDiscreted", "keys": "pred", "threshold": 2.0},
        ],
    }
    resumed = _train(
        **overrides, max_epochs=3, resume_from=str(checkpoint), **{"validate#postprocessing": no_particles}
    )
    assert resumed.parser.get_parsed_content("train#trainer").state.epoch == 3
    evaluator = resumed.parser.get_parsed_content("validate#evaluator")
    assert evaluator.state.best_metric == best_score  # the epoch log's "best" is the saved model's
    assert evaluator.state.best_metric_epoch in (1, 2)
    with (run / "history.csv").open(newline="") as handle:
        rows = {int(row["epoch"]): row for row in csv.DictReader(handle)}
    assert float(rows[3]["val_metric"]) < best_score or best_score == 0.0
    assert _sha256(run / "model.pt") == best_sha256
    ((kept_score, _),) = read_checkpoint(checkpoint)["best_model"]["_saved"]
    assert kept_score == best_score


def test_the_quick_start_trains_from_scratch_into_its_own_folder(tmp_path):
    workflow = ConfigWorkflow(
        config_file=[str(TRAIN), str(BUNDLE.parents[1] / "configs" / "quickstart.json")],
        workflow_type="train",
        logging_file=None,
        bundle_root=str(_tiny_bundle(tmp_path / "bundle")),
    )
    parsed = workflow.parser.get_parsed_content
    assert parsed("initial_weights") is None  # no dataset_dir: the synthetic data, from scratch
    assert (parsed("max_epochs"), parsed("learning_rate"), parsed("lr_schedule")) == (3, 1e-4, "constant")
    assert Path(parsed("ckpt_dir")) == tmp_path / "bundle" / "runs" / "quickstart"
