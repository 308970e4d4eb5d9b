"""TorchScript export through MONAI's ckpt_export, ONNX export, and the bundle's inference on onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from monai.data import load_net_with_metadata
from sharing_helpers import run_inference, write_micrograph
from tiny_bundle_network import TINY_NETWORK, tiny_network

from rformer_monai.sharing import (
    OnnxRuntimeNetwork,
    export_bundle_onnx,
    export_onnx,
    read_onnx_properties,
)

PROBABILITY_TOLERANCE = 1e-4
"""Largest absolute particle-probability difference accepted between the PyTorch and the onnxruntime paths."""
REAL_SIZE = (1, 1, 256, 256)
OUTPUT_CHANNELS = 2
"""The bundle network's outputs: particle and distance-map logits."""


@pytest.mark.slow
def test_ckpt_export_cli_writes_torchscript_with_metadata_and_same_output(tiny_bundle):
    configs = tiny_bundle / "configs"
    overrides = [f"--{key}={json.dumps(value)}" for key, value in TINY_NETWORK.items()]
    command = [
        sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def",
        "--filepath", str(tiny_bundle / "models" / "model.ts"),
        "--ckpt_file", str(tiny_bundle / "models" / "model.pt"),
        "--meta_file", str(configs / "metadata.json"),
        "--config_file", str(configs / "inference.json"),
        "--bundle_root", str(tiny_bundle),
        *overrides,
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)

    scripted, metadata, extra = load_net_with_metadata(
        str(tiny_bundle / "models" / "model.ts"), more_extra_files=("inference.json",)
    )
    assert metadata["version"] == json.loads((configs / "metadata.json").read_text())["version"]
    assert metadata["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    assert json.loads(extra["inference.json"])["network_def"]["_target_"] == "rformer_monai.networks.ResidualFormer"

    eager = tiny_network()
    eager.load_state_dict(torch.load(tiny_bundle / "models" / "model.pt", weights_only=True))
    image = torch.randn(*REAL_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, exported = eager(image), torch.jit.load(str(tiny_bundle / "models" / "model.ts"))(image)
    assert exported.shape == (1, OUTPUT_CHANNELS, 256, 256)
    torch.testing.assert_close(exported, expected, rtol=0, atol=1e-6)
    assert isinstance(scripted, torch.jit.ScriptModule)


@pytest.mark.parametrize("shape", [REAL_SIZE, (2, 1, 192, 320)])
def test_onnx_export_has_dynamic_size_and_matches_pytorch(tiny_bundle, shape):
    path = export_bundle_onnx(tiny_bundle, override=TINY_NETWORK)
    assert path == tiny_bundle / "models" / "model.onnx"
    properties = read_onnx_properties(path)
    bundle_metadata = json.loads((tiny_bundle / "configs" / "metadata.json").read_text())
    assert json.loads(properties["metadata.json"]) == bundle_metadata
    assert json.loads(properties["network_def"])["channels"] == TINY_NETWORK["network_def#channels"]

    eager = tiny_network()
    eager.load_state_dict(torch.load(tiny_bundle / "models" / "model.pt", weights_only=True))
    image = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = torch.sigmoid(eager(image))
        onnx_probability = torch.sigmoid(OnnxRuntimeNetwork(path)(image))
    assert onnx_probability.shape == (shape[0], OUTPUT_CHANNELS, *shape[2:])
    assert float((onnx_probability - expected).abs().max()) < PROBABILITY_TOLERANCE


@pytest.mark.parametrize("tta", [None, "dihedral"])
def test_onnx_inference_override_matches_the_pytorch_path(tiny_bundle, tmp_path, tta):
    inputs = tmp_path / "in"
    write_micrograph(inputs, "grains", size=(100, 130))
    export_bundle_onnx(tiny_bundle, override=TINY_NETWORK)
    options = {"save_probability": True, "tta": tta}

    run_inference(tiny_bundle, inputs, tmp_path / "torch", **options)
    run_inference(tiny_bundle, inputs, tmp_path / "onnx", ("inference_onnx.json",), **options)

    torch_probability = tifffile.imread(tmp_path / "torch" / "grains_prob.tif")
    onnx_probability = tifffile.imread(tmp_path / "onnx" / "grains_prob.tif")
    assert onnx_probability.shape == torch_probability.shape == (100, 130)
    assert float(np.abs(onnx_probability - torch_probability).max()) < PROBABILITY_TOLERANCE
    # masks agree wherever the probability is not within the tolerance of the threshold
    decided = np.abs(torch_probability - 0.5) > PROBABILITY_TOLERANCE
    torch_mask = tifffile.imread(tmp_path / "torch" / "grains_mask.tif")
    onnx_mask = tifffile.imread(tmp_path / "onnx" / "grains_mask.tif")
    np.testing.assert_array_equal(onnx_mask[decided], torch_mask[decided])


def test_onnx_network_without_its_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ONNX model not found.*rformer_monai.sharing onnx"):
        OnnxRuntimeNetwork(tmp_path / "models" / "model.onnx")


def test_export_onnx_rejects_a_non_2d_example_shape(tmp_path):
    with pytest.raises(ValueError, match=r"example_shape must be \(B, C, H, W\)"):
        export_onnx(tiny_network(), tmp_path / "model.onnx", example_shape=(1, 1, 64))
