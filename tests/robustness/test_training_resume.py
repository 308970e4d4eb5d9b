"""Training survives interruption and is reproducible: checkpoints are written atomically, a run killed after
a checkpoint and resumed with one override ends with the weights of an uninterrupted run, and two runs with
the same seed give identical weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import write_labelled_dataset
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.bundle import ConfigWorkflow
from monai.data import DataLoader, Dataset
from monai.transforms import RandSpatialCropd
from robustness_helpers import kill_when, train_config_files
from tiny_bundle_network import TINY_NETWORK, TINY_RUN

from rformer_monai.networks import read_checkpoint
from rformer_monai.workflows import (
    AtomicCheckpointWriter,
    BestModelSaver,
    ReseedEachEpoch,
    TrainingCheckpointSaver,
    epoch_seed,
)

MAX_EPOCHS = 3


# ------------------------------------------------------------------------------------------
# atomic checkpoints


def linear_trainer() -> tuple[torch.nn.Module, torch.optim.Optimizer, Engine]:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(engine: Engine, batch: torch.Tensor) -> float:
        optimizer.zero_grad()
        loss = model(batch).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    return model, optimizer, Engine(step)


def test_checkpoint_writer_is_atomic_and_keeps_default_permissions(tmp_path, monkeypatch):
    writer = AtomicCheckpointWriter(tmp_path / "checkpoints")
    writer({"model": {"w": torch.ones(2)}}, "a.pt")
    path = tmp_path / "checkpoints" / "a.pt"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by the group, unlike ignite's atomic saver
    old = path.read_bytes()

    def crash(obj, file, *args, **kwargs):
        Path(file).write_bytes(b"PK half a checkpoint")
        raise OSError("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="killed mid-write"):
        writer({"model": {"w": torch.zeros(2)}}, "a.pt")
    assert path.read_bytes() == old
    assert os.listdir(path.parent) == ["a.pt"]

    monkeypatch.undo()
    (path.parent / ".a.pt.k1ll3d.tmp").write_bytes(b"PK left by a SIGKILL")  # finally-blocks do not run then
    writer({"model": {"w": torch.zeros(2)}}, "a.pt")
    assert os.listdir(path.parent) == ["a.pt"]
    torch.testing.assert_close(read_checkpoint(path)["model"]["w"], torch.zeros(2))


def test_old_checkpoint_is_removed_only_after_the_new_one_is_written(tmp_path, monkeypatch):
    model, optimizer, trainer = linear_trainer()
    TrainingCheckpointSaver(str(tmp_path), {"model": model, "optimizer": optimizer}, n_saved=1).attach(trainer)
    real_save = torch.save

    def crash_in_epoch_two(obj, file, *args, **kwargs):
        if trainer.state.epoch == 2:
            raise OSError("killed mid-write")
        real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_in_epoch_two)
    with pytest.raises(OSError):
        trainer.run([torch.ones(4, 2)] * 2, max_epochs=3)
    # ignite removes the old file before saving the new one; the writer waits for the new one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt"]
    assert read_checkpoint(tmp_path / "checkpoint_epoch=1.pt")["trainer"]["iteration"] == 2  # epoch 1 of 2 iterations


def test_checkpoint_saver_keeps_n_saved_and_the_final_one(tmp_path):
    model, optimizer, trainer = linear_trainer()
    TrainingCheckpointSaver(str(tmp_path), {"model": model, "optimizer": optimizer}, n_saved=2).attach(trainer)
    trainer.run([torch.ones(4, 2)] * 2, max_epochs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_epoch=3.pt",
        "checkpoint_epoch=4.pt",
        "checkpoint_final.pt",
    ]
    final = read_checkpoint(tmp_path / "checkpoint_final.pt")
    assert final["trainer"]["iteration"] == 8
    torch.testing.assert_close(final["model"]["weight"], model.weight.detach(), rtol=0, atol=0)


def test_checkpoint_saver_bad_n_saved(tmp_path):
    with pytest.raises(ValueError, match="n_saved must be >= 1, got 0"):
        TrainingCheckpointSaver(str(tmp_path), {}, n_saved=0)


def test_ignite_checkpoint_objects_survive_the_writer(tmp_path):
    model, optimizer, trainer = linear_trainer()
    checkpoint = Checkpoint({"model": model, "optimizer": optimizer}, AtomicCheckpointWriter(tmp_path), n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    trainer.run([torch.ones(4, 2)], max_epochs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_2.pt"]


def scored_evaluator(model: torch.nn.Module, scores: list[float]) -> Engine:
    """An evaluator whose epoch ``n`` sets the weight to ``n`` and scores ``scores[n - 1]`` as its key metric."""

    def step(engine: Engine, batch: torch.Tensor) -> None:
        with torch.no_grad():
            model.weight.fill_(engine.state.epoch)

    evaluator = Engine(step)
    evaluator.state.key_metric_name = "val_mean_dice"

    @evaluator.on(Events.EPOCH_COMPLETED)
    def score(engine: Engine) -> None:
        engine.state.metrics["val_mean_dice"] = scores[engine.state.epoch - 1]

    return evaluator


def test_best_model_saver_keeps_the_best_scoring_weights_as_one_bare_state_dict(tmp_path):
    model = torch.nn.Linear(2, 1)
    evaluator = scored_evaluator(model, [0.5, 0.7, 0.6])
    BestModelSaver(str(tmp_path), {"model": model}).attach(evaluator)
    evaluator.run([torch.ones(1)], max_epochs=3)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    saved = read_checkpoint(tmp_path / "model.pt")
    torch.testing.assert_close(saved["weight"], torch.full((1, 2), 2.0))  # epoch 2 scored best


def test_best_model_survives_a_crash_while_the_next_best_is_saved(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 1)
    evaluator = scored_evaluator(model, [0.5, 0.7])
    BestModelSaver(str(tmp_path), {"model": model}).attach(evaluator)
    real_save = torch.save

    def crash_in_epoch_two(obj, file, *args, **kwargs):
        if evaluator.state.epoch == 2:
            Path(file).write_bytes(b"PK half a model")
            raise OSError("killed mid-write")
        real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_in_epoch_two)
    with pytest.raises(OSError, match="killed mid-write"):
        evaluator.run([torch.ones(1)], max_epochs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    torch.testing.assert_close(read_checkpoint(tmp_path / "model.pt")["weight"], torch.full((1, 2), 1.0))


def test_best_model_saver_without_a_key_metric_is_a_clear_error(tmp_path):
    evaluator = Engine(lambda engine, batch: None)
    BestModelSaver(str(tmp_path), {"model": torch.nn.Linear(2, 1)}).attach(evaluator)
    with pytest.raises(ValueError, match="no key metric"):
        evaluator.run([0], max_epochs=1)


# ------------------------------------------------------------------------------------------
# random draws that depend on (seed, epoch) only


def test_epoch_seed():
    assert epoch_seed(0, 1) == epoch_seed(0, 1)
    assert len({epoch_seed(seed, epoch) for seed in range(3) for epoch in range(5)}) == 15
    with pytest.raises(ValueError, match="seed and epoch must be >= 0"):
        epoch_seed(-1, 0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got 'abc'"):
        ReseedEachEpoch("abc")


def draws_per_epoch(num_workers: int, max_epochs: int, start_epoch: int = 0) -> dict[int, list[list[float]]]:
    """Random crops of a shuffled dataset per epoch, optionally starting as a resumed run would."""
    data = [{"image": torch.arange(64.0).reshape(1, 8, 8) + 100 * i} for i in range(4)]
    dataset = Dataset(data, transform=RandSpatialCropd(keys="image", roi_size=(2, 2), random_size=False))
    loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=num_workers)
    draws: dict[int, list[list[float]]] = {}
    def step(engine: Engine, batch: dict) -> None:
        draws.setdefault(engine.state.epoch, []).append(batch["image"].flatten().tolist())

    engine = Engine(step)
    engine.data_loader = loader  # as MONAI's workflows hold it
    ReseedEachEpoch(seed=7).attach(engine)
    if start_epoch:  # as CheckpointLoader restores a trainer
        iteration = start_epoch * len(loader)
        engine.load_state_dict({"iteration": iteration, "epoch_length": len(loader), "max_epochs": max_epochs})
    torch.manual_seed(start_epoch)  # whatever state the generators are in when the run starts
    engine.run(loader, max_epochs=max_epochs)
    return draws


@pytest.mark.parametrize("num_workers", [0, 2])
def test_reseeded_epochs_do_not_depend_on_earlier_epochs(num_workers):
    uninterrupted = draws_per_epoch(num_workers, max_epochs=3)
    resumed = draws_per_epoch(num_workers, max_epochs=3, start_epoch=1)
    assert sorted(resumed) == [2, 3]
    assert resumed[2] == uninterrupted[2] and resumed[3] == uninterrupted[3]
    assert uninterrupted[2] != uninterrupted[3]


# ------------------------------------------------------------------------------------------
# the bundle's training workflow


def training_overrides(bundle_root: Path, dataset: Path, **extra) -> dict:
    return {
        **TINY_NETWORK,
        **TINY_RUN,
        "bundle_root": str(bundle_root),
        "dataset_dir": str(dataset),
        "ckpt_dir": str(bundle_root / "run"),
        "max_epochs": MAX_EPOCHS,
        "val_interval": MAX_EPOCHS,
        "num_folds": 2,
        "crops_per_image": 2,
        "lr_schedule": "cosine",  # a resumed run must carry the schedule on, not restart it
        **extra,
    }


def train_in_process(config_files: list[Path], overrides: dict) -> ConfigWorkflow:
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files], workflow_type="train", logging_file=None, **overrides
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def final_weights(bundle_root: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(bundle_root / "run" / "checkpoints" / "checkpoint_final.pt")["model"]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """One uninterrupted training run: (its folder, the dataset, its final weights)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    dataset = write_labelled_dataset(folder / "data", size=(64, 64), mean_diameter_px=10.0)
    train_in_process(train_config_files(folder), training_overrides(folder / "bundle", dataset))
    return folder, dataset, final_weights(folder / "bundle")


def test_same_seed_same_weights(uninterrupted_run, tmp_path):
    _, dataset, expected = uninterrupted_run
    train_in_process(train_config_files(tmp_path), training_overrides(tmp_path / "bundle", dataset))
    for name, tensor in final_weights(tmp_path / "bundle").items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(uninterrupted_run, tmp_path):
    _, dataset, expected = uninterrupted_run
    bundle_root = tmp_path / "bundle"
    checkpoints = bundle_root / "run" / "checkpoints"
    overrides = training_overrides(bundle_root, dataset)
    # killed while it sleeps after saving the checkpoint of epoch 1
    sleep = {"_target_": "slow_handlers.SleepAfterEach", "event": "EPOCH_COMPLETED", "seconds": 5.0}
    configs = train_config_files(tmp_path, [sleep])
    kill_when(configs, overrides, cwd=tmp_path, ready=lambda: any(checkpoints.glob("checkpoint_epoch=*.pt")))
    saved = sorted(checkpoints.glob("checkpoint_epoch=*.pt"))
    assert [p.name for p in saved] == ["checkpoint_epoch=1.pt"]
    assert not (checkpoints / "checkpoint_final.pt").exists()

    resumed = train_in_process(train_config_files(tmp_path), {**overrides, "resume_from": str(saved[0])})
    trainer = resumed.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == MAX_EPOCHS
    weights = final_weights(bundle_root)
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, expected[name], msg=name)
    optimizer_state = read_checkpoint(checkpoints / "checkpoint_final.pt")["optimizer"]["state"]
    assert all(int(state["step"]) == MAX_EPOCHS * 2 for state in optimizer_state.values())  # Adam's steps carried over
    assert read_checkpoint(checkpoints / "checkpoint_final.pt")["lr_scheduler"]["last_epoch"] == MAX_EPOCHS
    assert np.any([not torch.equal(weights[name], read_checkpoint(saved[0])["model"][name]) for name in weights])
