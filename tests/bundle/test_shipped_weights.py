"""The shipped weights: they fit the bundle's network, the TorchScript export matches them, and they segment
a real BAM micrograph (a sanity check: the shipped model was trained on all 30 images, its scores come from
cross-validation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer

from rformer_monai.engines import load_weights
from rformer_monai.metrics import binary_confusion, scores_from_confusion
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
