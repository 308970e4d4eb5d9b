"""Batch inference under torchrun: two CPU processes share the micrographs and write what one process writes
(rank 0 writes the folder summary, run.json and report.html once every rank is done)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigWorkflow
from tiny_bundle_network import BUNDLE, TINY_NETWORK, tiny_network

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.workflows import rank_file, shard_items

TORCHRUN = Path(sys.executable).with_name("torchrun")
CONFIGS = BUNDLE / "configs"


def test_outside_torchrun_one_process_takes_every_item():
    assert shard_items([1, 2, 3], rank=0) == [1, 2, 3]


def test_rank_files():
    assert rank_file("out/failed.csv", 0) == "out/failed.csv"
    assert rank_file("out/failed.csv", 3) == str(Path("out/failed_rank3.csv"))


def _outputs(folder: Path) -> dict[str, object]:
    """Every file of an output folder: TIFFs as arrays, ROI zips as their members, run.json without the output
    folder, report.html with the folder's name taken out, SVGs (a date and random ids inside) as their presence,
    others as bytes."""
    files: dict[str, object] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".tif":
            files[path.name] = tifffile.imread(path)
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                files[path.name] = {name: archive.read(name) for name in archive.namelist()}
        elif path.name == "run.json":
            record = json.loads(path.read_text())
            record["settings"].pop("output_dir", None)
            files[path.name] = record
        elif path.name == "report.html":
            files[path.name] = path.read_text().replace(folder.name, "OUT")
        elif path.suffix == ".svg":
            files[path.name] = True
        else:
            files[path.name] = path.read_bytes()
    return files


@pytest.mark.slow
def test_torchrun_two_cpu_processes_write_what_one_process_writes(tmp_path):
    config = "inference.json"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, size in enumerate([(90, 120), (130, 100), (100, 100), (70, 150), (120, 90)]):
        image, _ = render_micrograph(size, rng=index, mean_diameter_px=12.0)
        tifffile.imwrite(inputs / f"image{index}.tif", image)
    bundle_root = tmp_path / "bundle"
    (bundle_root / "models").mkdir(parents=True)
    torch.save(tiny_network(seed=1).state_dict(), bundle_root / "models" / "model.pt")
    overrides = {
        **TINY_NETWORK,
        "roi_size": [64, 64],
        "sw_batch_size": 2,
        "device": "cpu",
        # the random tiny network's probability lies in [0.483, 0.489]: thresholds inside it give particles
        "threshold": 0.4855,
        "particle_threshold": 0.4855,
        "bundle_root": str(bundle_root),
        "dataset_dir": str(inputs),
    }
    configs = f"['{CONFIGS / config}','{CONFIGS / 'multi_gpu_inference.json'}']"
    command = [
        str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run",
        "--config_file", configs, "--meta_file", str(CONFIGS / "metadata.json"),
        "--logging_file", str(CONFIGS / "logging.conf"), f"--output_dir={tmp_path / 'shared'}",
        *(f"--{key}={value}" for key, value in overrides.items() if key != "device"),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, timeout=540, env=environment, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    single = ConfigWorkflow(
        config_file=str(CONFIGS / config),
        logging_file=None,
        workflow_type="infer",
        output_dir=str(tmp_path / "single"),
        **overrides,
    )
    single.initialize()
    single.run()
    single.finalize()

    shared, alone = _outputs(tmp_path / "shared"), _outputs(tmp_path / "single")
    assert sorted(shared) == sorted(alone)
    assert len([name for name in alone if name.endswith("_mask.tif")]) == 5
    header, *_, pooled = (line.split(",") for line in alone["summary.csv"].decode().splitlines())
    assert pooled[0] == "pooled" and int(pooled[header.index("particle_count")]) > 20  # particles, not empty tables
    assert {"run.json", "report.html", "image0_rois.zip", "image0_image.json"} <= set(alone)
    for name, content in alone.items():
        if isinstance(content, np.ndarray):
            np.testing.assert_array_equal(shared[name], content, err_msg=name)
        else:
            assert shared[name] == content, name
