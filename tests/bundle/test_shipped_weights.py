"""The shipped weights: they fit the bundle's network, the TorchScript export matches them, and they segment
a real BAM micrograph (a sanity check: the shipped model was trained on all 30 images, its scores come from
cross-validation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from rformer_monai.files import sha256_of
from rformer_monai.metrics import binary_confusion, scores_from_confusion
from rformer_monai.networks import load_weights
from rformer_monai.transforms import validation_transforms

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "residualformer_sem"
SANITY_DICE = 0.9


def _inference_config() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "inference.json")
    parser["bundle_root"] = str(BUNDLE)
    return parser


def test_shipped_weights_fit_the_bundle_network_and_torchscript_matches():
    parser = _inference_config()
    network = load_weights(parser.get_parsed_content("network_def"), BUNDLE / "models" / "model.pt").eval()
    scripted = torch.jit.load(str(BUNDLE / "models" / "model.ts"), map_location="cpu").eval()
    image = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(network(image), scripted(image))


def test_shipped_weights_segment_a_real_micrograph(bam_dataset_dir):
    parser = _inference_config()
    network = load_weights(parser.get_parsed_content("network_def"), BUNDLE / "models" / "model.pt").eval()
    pair = {
        "image": str(bam_dataset_dir / "Datasets/Electron Microscopy Images/SEM/1908248.tif"),
        "label": str(bam_dataset_dir / "Datasets/Electron Microscopy Image Masks/TiO2_Masks_Manual_4connected/1908248_m.tif"),
    }
    item = validation_transforms()(pair)
    inferer = SlidingWindowInferer(roi_size=(256, 256), sw_batch_size=4, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        probability = torch.sigmoid(inferer(item["image"][None], network))[0, 0].numpy()
    scores = scores_from_confusion(binary_confusion(probability > 0.5, item["label"][0].numpy() > 0))
    assert scores["dice"] > SANITY_DICE
    assert np.isfinite(probability).all()


def _large_files() -> dict[str, str]:
    """``large_files.yml``'s entries as {path: sha256} (the file's block list of path/hash_val pairs)."""
    entries, path = {}, None
    for line in (BUNDLE / "large_files.yml").read_text().splitlines():
        key, _, value = line.strip().lstrip("- ").partition(": ")
        if key == "path":
            path = value.strip('"')
        elif key == "hash_val":
            entries[path] = value.strip('"')
    return entries


def test_large_files_lists_every_shipped_weight_file_with_its_sha256():
    entries = _large_files()
    assert sorted(entries) == sorted(f"models/{path.name}" for path in (BUNDLE / "models").iterdir())
    for path, expected in entries.items():
        assert sha256_of(BUNDLE / path) == expected, f"{path}: sha256 differs from large_files.yml"


def test_torchscript_carries_the_bundle_metadata_of_this_version():
    extra_files = {"metadata.json": ""}
    torch.jit.load(str(BUNDLE / "models" / "model.ts"), map_location="cpu", _extra_files=extra_files)
    embedded = json.loads(extra_files["metadata.json"])
    current = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert embedded == current, "models/model.ts is stale: regenerate it with ckpt_export (docs/sharing.md)"
