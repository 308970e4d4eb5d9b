"""Tests for the workflow pieces: weight loading, resumable checkpoints, the epoch log line, mask writing."""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from ignite.engine import Engine, Events
from torch import nn

from rformer_monai.files import write_tiff_atomic
from rformer_monai.networks import CheckpointError, load_weights, read_checkpoint
from rformer_monai.workflows import EpochSummaryHandler, ResumeFromCheckpoint, TrainingCheckpointSaver


def tiny_network(out_channels: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, out_channels, 1))


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, tensor_a), tensor_b in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(tensor_a, tensor_b, rtol=0, atol=0, msg=name)


# ------------------------------------------------------------------------------------------
# load_weights


@pytest.mark.parametrize("wrap", [False, True], ids=["bare-state-dict", "training-checkpoint"])
def test_load_weights(tmp_path, wrap):
    trained = tiny_network()
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(1.0)
    state_dict = trained.state_dict()
    path = tmp_path / "model.pt"
    torch.save({"model": state_dict, "epoch": 3} if wrap else state_dict, path)
    network = tiny_network()
    assert load_weights(network, path) is network
    assert_same_weights(network, trained)


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "models" / "model.pt"
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: checkpoint not found")):
        load_weights(tiny_network(), path)


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"], ids=["empty", "text", "broken-zip"]
)
def test_corrupt_checkpoint_names_the_path(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a readable PyTorch checkpoint")):
        load_weights(tiny_network(), path)


class RunsCode:
    """Pickles as a call (``os.getpid()``, harmless): what a malicious checkpoint holds in place of a tensor."""

    def __reduce__(self):
        return (os.getpid, ())


def test_checkpoint_that_would_run_code_is_refused_as_unsafe(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {"weight": RunsCode()}}, path)
    with pytest.raises(CheckpointError) as error:
        load_weights(tiny_network(), path)
    message = str(error.value)
    assert message.startswith(f"{path}: refused as unsafe: it holds Python objects that would run code when loaded")
    assert "corrupt" not in message and "weights_only=False" in message


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(tiny_network().state_dict(), path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(path)


def test_checkpoint_that_is_not_a_dict(tmp_path):
    path = tmp_path / "model.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: expected a state dict, found list")):
        load_weights(tiny_network(), path)


@pytest.mark.parametrize(
    "other, detail",
    [
        (lambda: tiny_network(out_channels=3), "tensor shapes differ"),  # other constructor arguments
        (lambda: nn.Sequential(nn.Linear(4, 2)), "missing"),  # another architecture
    ],
    ids=["other-arguments", "other-architecture"],
)
def test_weights_of_another_network(tmp_path, other, detail):
    path = tmp_path / "model.pt"
    torch.save(other().state_dict(), path)
    with pytest.raises(CheckpointError, match="weights do not fit Sequential") as error:
        load_weights(tiny_network(), path)
    message = str(error.value)
    assert str(path) in message
    assert detail in message
    assert "network arguments" in message


# ------------------------------------------------------------------------------------------
# write_tiff_atomic


def test_write_tiff_atomic_writes_and_replaces(tmp_path):
    path = tmp_path / "new" / "a.tif"
    assert write_tiff_atomic(path, np.ones((3, 4), np.uint8)) == path
    write_tiff_atomic(path, np.full((2, 2), 7, np.uint16))
    np.testing.assert_array_equal(tifffile.imread(path), np.full((2, 2), 7, np.uint16))
    assert os.listdir(path.parent) == ["a.tif"]
    current_umask = os.umask(0)
    os.umask(current_umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask  # as open() would have created it


def test_write_tiff_atomic_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "a_mask.tif"
    old = np.full((4, 4), 255, np.uint8)
    write_tiff_atomic(path, old)
    old_bytes = path.read_bytes()

    def fail(*args, **kwargs):
        Path(args[0]).write_bytes(b"half a TIFF")  # the crash happens mid-write
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", fail)
    with pytest.raises(OSError, match="disk full"):
        write_tiff_atomic(path, np.zeros((4, 4), np.uint8))
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["a_mask.tif"]  # the temporary file is removed


# ------------------------------------------------------------------------------------------
# ignite pieces on a tiny engine

DATA = [torch.full((4, 2), float(i)) for i in range(3)]


def tiny_trainer(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, Engine]:
    torch.manual_seed(seed)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(engine: Engine, batch: torch.Tensor) -> dict:
        optimizer.zero_grad()
        loss = ((model(batch) - 1.0) ** 2).mean()
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    return model, optimizer, Engine(step)


def test_epoch_summary_logs_one_line_per_epoch_with_the_loss(caplog):
    _, _, trainer = tiny_trainer()
    EpochSummaryHandler().attach(trainer)
    losses: list[list[float]] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: losses.append([]))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: losses[-1].append(engine.state.output["loss"]))
    with caplog.at_level(logging.INFO, logger="rformer_monai.training"):
        trainer.run(DATA, max_epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "rformer_monai.training"]
    assert len(lines) == 2
    for epoch, (line, epoch_losses) in enumerate(zip(lines, losses), start=1):
        assert line.startswith(f"epoch {epoch}/2 | train loss ")
        assert f"train loss {sum(epoch_losses) / len(epoch_losses):.4f}" in line
        assert re.search(r"\| \d+\.\d s$", line)


def test_epoch_summary_reads_the_loss_from_a_list_output(caplog):
    trainer = Engine(lambda engine, batch: [{"loss": 0.25}, {"loss": 99.0}])  # one dict per sample, as MONAI
    EpochSummaryHandler().attach(trainer)
    with caplog.at_level(logging.INFO, logger="rformer_monai.training"):
        trainer.run([0, 1], max_epochs=1)
    summaries = [r.getMessage() for r in caplog.records if r.name == "rformer_monai.training"]
    assert len(summaries) == 1 and "train loss 0.2500" in summaries[0]


def test_epoch_summary_history_continues_from_the_resumed_epoch(tmp_path):
    history = tmp_path / "history.csv"
    model, optimizer, trainer = tiny_trainer()
    EpochSummaryHandler(history_path=history).attach(trainer)
    TrainingCheckpointSaver(str(tmp_path / "ckpt"), {"model": model, "optimizer": optimizer}, n_saved=3).attach(trainer)
    trainer.run(DATA, max_epochs=3)  # a run that got past its epoch-1 checkpoint, then is resumed from it

    resumed_model, resumed_optimizer, resumed = tiny_trainer()
    EpochSummaryHandler(history_path=history).attach(resumed)
    load_dict = {"model": resumed_model, "optimizer": resumed_optimizer}
    ResumeFromCheckpoint(str(tmp_path / "ckpt" / "checkpoint_epoch=1.pt"), load_dict).attach(resumed)
    resumed.run(DATA, max_epochs=4)
    with history.open() as handle:
        epochs = [row["epoch"] for row in csv.DictReader(handle)]
    assert epochs == ["1", "2", "3", "4"]


def test_checkpoint_saver_and_resume_round_trip(tmp_path):
    model, optimizer, trainer = tiny_trainer()
    TrainingCheckpointSaver(str(tmp_path), {"model": model, "optimizer": optimizer}).attach(trainer)
    trainer.run(DATA, max_epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt", "checkpoint_final.pt"]
    checkpoint = read_checkpoint(tmp_path / "checkpoint_epoch=1.pt")
    assert {"model", "optimizer", "trainer"} <= set(checkpoint)

    resumed_model, resumed_optimizer, resumed = tiny_trainer(seed=1)  # other initial weights
    started: list[tuple[int, int]] = []

    def on_epoch_started(engine: Engine) -> None:
        started.append((engine.state.epoch, engine.state.iteration))
        assert_same_weights(resumed_model, model)  # restored before the first resumed iteration

    resumed.add_event_handler(Events.EPOCH_STARTED, on_epoch_started)
    load_dict = {"model": resumed_model, "optimizer": resumed_optimizer}
    ResumeFromCheckpoint(str(tmp_path / "checkpoint_epoch=1.pt"), load_dict).attach(resumed)
    resumed.run(DATA, max_epochs=2)
    assert started == [(2, len(DATA))]  # epoch 1 is not repeated
    assert resumed.state.epoch == 2 and resumed.state.iteration == 2 * len(DATA)


def test_resume_without_checkpoint_starts_fresh():
    model, optimizer, trainer = tiny_trainer()
    ResumeFromCheckpoint(None, {"model": model, "optimizer": optimizer}).attach(trainer)
    trainer.run(DATA, max_epochs=1)
    assert trainer.state.epoch == 1 and trainer.state.iteration == len(DATA)


def test_resume_from_missing_checkpoint_fails_early(tmp_path):
    model, optimizer, _ = tiny_trainer()
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'absent.pt'}: checkpoint not found")):
        ResumeFromCheckpoint(str(tmp_path / "absent.pt"), {"model": model, "optimizer": optimizer})


def test_checkpoint_saver_bad_interval(tmp_path):
    with pytest.raises(ValueError, match="save_interval must be >= 1, got 0"):
        TrainingCheckpointSaver(str(tmp_path), {}, save_interval=0)
