"""``python -m rformer_monai.inference``: the bundle's network on micrographs of any size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from inference_helpers import (
    particles_image,
)
from tiny_bundle_network import BUNDLE, TINY_NETWORK

from rformer_monai.inference import (
    DihedralTTA,
    analyse_micrograph,
    load_bundle_inference,
    segment_large_micrograph,
)
from rformer_monai.inference.__main__ import main

TINY_OVERRIDES = [f"{key}={json.dumps(value)}" for key, value in TINY_NETWORK.items()] + ["roi_size=[64,64]"]


@pytest.fixture
def checkpoint(tmp_path: Path, tiny_net) -> Path:
    path = tmp_path / "model.pt"
    torch.save(tiny_net.state_dict(), path)
    return path


def test_segments_a_folder_like_the_python_function(tmp_path, checkpoint, write_micrograph, tiny_net):
    write_micrograph("a.tif", particles_image((300, 260), bar_rows=20))
    write_micrograph("nested/b.tif", particles_image((150, 170), seed=2), compression="zlib")
    output = tmp_path / "masks"
    arguments = [str(tmp_path / "inputs"), str(output), "--bundle_root", str(BUNDLE), "--ckpt_path", str(checkpoint)]
    assert main([*arguments, "--device", "cpu", "--block_size", "64", "--override", *TINY_OVERRIDES]) == 0
    outputs = sorted(path.name for path in output.iterdir())
    for stem in ("a", "b"):  # the bundle's whole contract, as monai.bundle run writes it
        for suffix in ("_mask.tif", "_labels.tif", "_particles.csv", "_overlay.png", "_psd.png"):
            assert f"{stem}{suffix}" in outputs
    assert "summary.csv" in outputs

    override = {
        "ckpt_path": str(checkpoint),
        "device": "cpu",
        "roi_size": [64, 64],
        **TINY_NETWORK,
    }
    parts = load_bundle_inference(BUNDLE, override=override)
    assert parts.inferer.roi_size == [64, 64] and parts.intensity == "unit" and parts.device.type == "cpu"
    assert not parts.network.training
    expected = segment_large_micrograph(
        tmp_path / "inputs" / "a.tif", tmp_path / "direct", tiny_net, parts.inferer, block_size=64, progress=False
    )
    np.testing.assert_array_equal(tifffile.imread(output / "a_mask.tif"), tifffile.imread(expected))


def test_tta_flag(tmp_path, checkpoint, write_micrograph, monkeypatch):
    write_micrograph("a.tif", particles_image((100, 90)))
    seen = []
    real = analyse_micrograph

    def spy(path, output_dir, network, *args, **kwargs):
        seen.append(network)
        return real(path, output_dir, network, *args, **kwargs)

    monkeypatch.setattr("rformer_monai.inference.streaming.analyse_micrograph", spy)
    arguments = [str(tmp_path / "inputs"), str(tmp_path / "masks"), "--bundle_root", str(BUNDLE)]
    options = ["--ckpt_path", str(checkpoint), "--device", "cpu", "--tta", "flips", "--override", *TINY_OVERRIDES]
    assert main([*arguments, *options]) == 0
    assert isinstance(seen[0], DihedralTTA) and seen[0].mode == "flips"


def test_a_bad_input_does_not_stop_the_others(tmp_path, checkpoint, write_micrograph):
    write_micrograph("good.tif", particles_image((100, 90)))
    (tmp_path / "inputs" / "broken.tif").write_bytes(b"II*\x00garbage")
    arguments = [str(tmp_path / "inputs"), str(tmp_path / "masks"), "--bundle_root", str(BUNDLE)]
    assert main([*arguments, "--ckpt_path", str(checkpoint), "--device", "cpu", "--override", *TINY_OVERRIDES]) == 1
    outputs = {path.name for path in (tmp_path / "masks").iterdir()}
    assert "good_mask.tif" in outputs and "failed.csv" in outputs
    assert not any(name.startswith("broken") for name in outputs)


def test_missing_checkpoint_is_one_line(tmp_path, write_micrograph, capsys):
    write_micrograph("a.tif", particles_image((100, 90)))
    arguments = [str(tmp_path / "inputs"), str(tmp_path / "masks"), "--bundle_root", str(BUNDLE)]
    assert main([*arguments, "--ckpt_path", str(tmp_path / "none.pt"), "--device", "cpu"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_an_output_folder_that_is_a_file_is_one_line_before_the_network_loads(tmp_path, write_micrograph, capsys):
    write_micrograph("a.tif", particles_image((80, 80)))
    output = tmp_path / "masks.tif"
    output.write_bytes(b"a file")
    # no --ckpt_path and no weights in the bundle folder given: were the network loaded first, that would be the error
    arguments = [str(tmp_path / "inputs"), str(output), "--bundle_root", str(tmp_path / "bundle")]
    assert main([*arguments, "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {output}: output folder is a file, not a folder: pass another --output_dir"
    )
