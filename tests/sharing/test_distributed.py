"""Data-parallel training: which handlers run on which rank, and a real two-process torchrun on CPU with gloo."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dataset_helpers import write_labelled_dataset
from monai.bundle import ConfigWorkflow
from tiny_bundle_network import BUNDLE, TINY_NETWORK, tiny_network

from rformer_monai.networks import load_weights
from rformer_monai.workflows import (
    BroadcastBuffers,
    ddp_device_ids,
    handlers_for_rank,
    init_distributed,
    local_device,
    main_rank_first,
)

TORCHRUN = Path(sys.executable).with_name("torchrun")


class _Handler:
    def __init__(self, name: str) -> None:
        self.name = name


def test_rank_zero_keeps_every_handler_other_ranks_only_the_shared_ones():
    resume, validation, log, saver = (_Handler(name) for name in ("resume", "validation", "log", "saver"))
    handlers = [resume, log, validation, saver]
    assert handlers_for_rank(handlers, [validation, resume], rank=0) == handlers
    assert handlers_for_rank(handlers, [validation, resume], rank=1) == [resume, validation]
    assert handlers_for_rank(handlers, [], rank=3) == []


def test_every_rank_handlers_the_workflow_does_not_list_come_first_on_every_rank():
    sync, log, validation = _Handler("sync"), _Handler("log"), _Handler("validation")
    assert handlers_for_rank([log, validation], [sync, validation], rank=0) == [sync, log, validation]
    assert handlers_for_rank([log, validation], [sync, validation], rank=2) == [sync, validation]


def test_outside_torchrun_the_process_group_is_a_clear_error(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="launch it with `torchrun --nproc_per_node=N"):
        init_distributed()


def test_cpu_device_without_device_ids(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device() == torch.device("cpu")
    assert ddp_device_ids(torch.device("cpu")) is None
    assert ddp_device_ids(torch.device("cuda", 1)) == [torch.device("cuda", 1)]


def test_multi_gpu_datalists_are_train_json_s_built_by_rank_zero_first():
    # the override wraps train.json's call; both must pass the same arguments
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())["datalists"]
    multi = json.loads((BUNDLE / "configs" / "multi_gpu_train.json").read_text())["datalists"]
    function, arguments = train.removeprefix("$").split("(", 1)
    assert multi == f"$rformer_monai.workflows.main_rank_first(@rank, {function}, {arguments}"


def test_main_rank_first_just_calls_without_a_process_group():
    assert main_rank_first(1, divmod, 7, 2) == (3, 1)


def test_buffer_broadcast_is_a_no_op_without_a_process_group():
    network = torch.nn.BatchNorm2d(2)
    network.running_mean.fill_(3.0)
    BroadcastBuffers(network)(engine=None)
    assert torch.equal(network.running_mean, torch.full((2,), 3.0))


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_epoch_and_rank_zero_saves(tmp_path):
    dataset = write_labelled_dataset(tmp_path / "data")
    bundle_root = tmp_path / "bundle"
    configs = f"['{BUNDLE / 'configs' / 'train.json'}','{BUNDLE / 'configs' / 'multi_gpu_train.json'}']"
    overrides = {
        **TINY_NETWORK,
        "roi_size": [64, 64],
        "num_workers": 0,
        "sw_batch_size": 2,
        "max_epochs": 1,
        "num_folds": 2,
        "crops_per_image": 2,
        "bundle_root": str(bundle_root),
        "dataset_dir": str(dataset),
        "pretrained": "null",
    }
    command = [
        str(TORCHRUN), "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "training",
        "--config_file", configs,
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--logging_file", str(BUNDLE / "configs" / "logging.conf"),
        *(f"--{key}={value}" for key, value in overrides.items()),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, timeout=540, env=environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # one run folder, shared by the ranks; rank 0 alone saved: one best model, one training checkpoint, one history row
    (run,) = (bundle_root / "runs").iterdir()
    assert (run / "model.pt").is_file()
    load_weights(tiny_network(BUNDLE / "configs" / "train.json"), run / "model.pt")  # a plain state dict: no DDP "module." prefix
    checkpoints = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint_final.pt"] or checkpoints == ["checkpoint_epoch=1.pt", "checkpoint_final.pt"]
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1"]
    assert rows[0]["val_metric"] != ""
    # the two training images were shared: each rank ran one iteration per epoch
    state = torch.load(run / "checkpoints" / "checkpoint_final.pt", weights_only=True)
    assert state["trainer"]["epoch_length"] == 1

    # the Dice over both validation images, one per rank, gathered: what one process finds with the saved model
    single = ConfigWorkflow(
        config_file=str(BUNDLE / "configs" / "train.json"),
        logging_file=None,
        workflow_type="train",
        **{**overrides, "bundle_root": str(tmp_path / "single"), "device": "cpu"},
    )
    single.initialize()
    load_weights(single.parser.get_parsed_content("network"), run / "model.pt")
    evaluator = single.parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    assert float(rows[0]["val_metric"]) == pytest.approx(evaluator.state.metrics["val_mean_dice"], abs=1e-6)
