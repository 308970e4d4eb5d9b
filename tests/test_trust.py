"""Trust checks (rformer_monai.trust): constructed out-of-distribution inputs are flagged, the shipped weights'
predictions on micrographs like their training images are not, and a bundle run writes the warning into
summary.csv and the log."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.inferers import SlidingWindowInferer

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.networks import load_weights
from rformer_monai.reports.summary import SUMMARY_CSV_NAME, write_folder_summary
from rformer_monai.reports.tables import analyse_mask
from rformer_monai.transforms import inference_transforms
from rformer_monai.transforms.contrast import CONTRAST_SCORE_KEY
from rformer_monai.trust import (
    MAX_FOREGROUND_FRACTION,
    MIN_CONTRAST_SCORE,
    MIN_FOREGROUND_FRACTION,
    MIN_MEAN_MARGIN,
    trust_statistics,
    trust_warning,
)

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "residualformer_sem"
CONFIGS = BUNDLE / "configs"
SIZE = (256, 256)
GREY_MAX = 255


def _statistics(**changes: float) -> dict[str, float]:
    """Statistics of an image like the training images, with ``changes``."""
    return {"foreground_fraction": 0.1, "mean_margin": 0.97, "contrast_score": 0.8, **changes}


def test_statistics_of_a_known_probability():
    probability = np.zeros((10, 10))
    probability[:2] = 0.75  # 20 % particles, margin 0.5 there and 1 elsewhere
    statistics = trust_statistics(probability, contrast_score=0.6)
    assert statistics == {
        "foreground_fraction": pytest.approx(0.2), "mean_margin": pytest.approx(0.9), "contrast_score": 0.6
    }
    assert np.isnan(trust_statistics(probability, None)["contrast_score"])
    with pytest.raises(ValueError, match="probability must hold at least one pixel"):
        trust_statistics(np.zeros((0,)), None)


def test_thresholds_are_ordered():
    assert 0 < MIN_FOREGROUND_FRACTION < MAX_FOREGROUND_FRACTION < 1
    assert 0 < MIN_MEAN_MARGIN < 1 and 0 < MIN_CONTRAST_SCORE < 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, ""),
        ({"contrast_score": float("nan")}, ""),
        ({"foreground_fraction": 0.95}, "background segmented as particles"),
        ({"foreground_fraction": 0.0}, "particles cover 0.00% of the image"),
        ({"mean_margin": 0.4}, "network undecided"),
        ({"contrast_score": -0.8}, "particles look dark to the network"),
        ({"contrast_score": 0.05}, "no clear particle contrast"),
    ],
)
def test_each_statistic_outside_its_range_gives_its_reason(changes, reason):
    warning = trust_warning(_statistics(**changes))
    assert (reason in warning) if reason else warning == ""


@pytest.fixture(scope="module")
def shipped():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser["bundle_root"] = str(BUNDLE)
    torch.set_num_threads(1)
    network = load_weights(parser.get_parsed_content("network_def"), BUNDLE / "models" / "model.pt").eval()
    inferer = SlidingWindowInferer(roi_size=(256, 256), sw_batch_size=1, overlap=0.25, mode="gaussian")

    def warning_for(image: np.ndarray, contrast: str, folder: Path) -> str:
        path = folder / "image.tif"
        tifffile.imwrite(path, image)
        item = inference_transforms(contrast=contrast)({"image": str(path)})["image"]
        with torch.no_grad():
            probability = torch.sigmoid(inferer(item[None], network))[0, 0].numpy()
        return trust_warning(trust_statistics(probability, float(item.meta[CONTRAST_SCORE_KEY])))

    return warning_for


def _synthetic(seed: int, coverage: float = 0.1) -> np.ndarray:
    return render_micrograph(SIZE, rng=seed, coverage=coverage)[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_shipped_weights_pass_synthetic_micrographs_of_either_contrast_with_auto(shipped, tmp_path, seed):
    assert shipped(_synthetic(seed), "auto", tmp_path) == ""
    assert shipped(GREY_MAX - _synthetic(seed), "auto", tmp_path) == ""
    assert shipped(_synthetic(seed, coverage=0.3), "auto", tmp_path) == ""


@pytest.mark.parametrize("seed", [0, 1])
def test_background_segmented_as_particles_is_flagged(shipped, tmp_path, seed):
    """Dark particles forced to be read as bright: the network segments the film."""
    warning = shipped(GREY_MAX - _synthetic(seed), "bright", tmp_path)
    assert "background segmented as particles" in warning and "particles look dark" in warning


def test_noise_and_constant_images_are_flagged(shipped, tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, GREY_MAX + 1, SIZE).astype(np.uint8)
    grey_noise = np.clip(rng.normal(128, 30, SIZE), 0, GREY_MAX).astype(np.uint8)
    constant = np.full(SIZE, 100, np.uint8)
    for image in (noise, grey_noise):
        warning = shipped(image, "auto", tmp_path)
        assert "network undecided" in warning and "no clear particle contrast" in warning
    assert "particles cover 0.00%" in shipped(constant, "auto", tmp_path)


@pytest.mark.slow
def test_bundle_inference_writes_contrast_and_warning_columns(tmp_path, caplog):
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "bright.tif", _synthetic(2))
    tifffile.imwrite(inputs / "dark.tif", GREY_MAX - _synthetic(3))
    rows = {}
    for contrast in ("auto", "bright"):
        output_dir = tmp_path / contrast
        workflow = ConfigWorkflow(
            config_file=str(CONFIGS / "inference.json"), meta_file=str(CONFIGS / "metadata.json"), logging_file=False,
            workflow_type="infer", bundle_root=str(BUNDLE), dataset_dir=str(inputs), output_dir=str(output_dir),
            contrast=contrast, device="cpu", num_workers=0, sw_batch_size=1,
        )
        workflow.initialize()
        with caplog.at_level(logging.INFO):
            workflow.run()
        workflow.finalize()
        with open(output_dir / SUMMARY_CSV_NAME, newline="") as file:
            rows[contrast] = {row["stem"]: row for row in csv.DictReader(file)}
    auto, forced = rows["auto"], rows["bright"]
    assert (auto["bright"]["contrast"], auto["dark"]["contrast"]) == ("bright", "dark")
    assert auto["bright"]["warning"] == auto["dark"]["warning"] == auto["pooled"]["warning"] == ""
    assert auto["pooled"]["contrast"] == "bright/dark"
    assert forced["dark"]["contrast"] == "bright" and "background segmented as particles" in forced["dark"]["warning"]
    assert forced["bright"]["warning"] == "" and forced["pooled"]["warning"] == "1 of 2 images flagged"
    assert "dark.tif: dark particles" in caplog.text  # auto's decision, logged
    flagged = [r for r in caplog.records if r.levelno == logging.WARNING and "background segmented" in r.getMessage()]
    assert len(flagged) == 1 and "dark.tif" in flagged[0].getMessage()


def test_summary_csv_carries_contrast_and_warning(tmp_path):
    image, mask = render_micrograph((96, 96), rng=0, mean_diameter_px=12.0)
    analyse_mask(mask > 0, image, 7.5, tmp_path, "fine", extra={"contrast": "dark", "warning": ""})
    analyse_mask(mask > 0, image, 7.5, tmp_path, "odd", extra={"contrast": "bright", "warning": "network undecided"})
    write_folder_summary(tmp_path)
    with open(tmp_path / SUMMARY_CSV_NAME, newline="") as file:
        written = {row["stem"]: row for row in csv.DictReader(file)}
    assert written["fine"]["warning"] == "" and written["odd"]["warning"] == "network undecided"
    assert (written["fine"]["flagged_count"], written["odd"]["flagged_count"]) == ("0", "1")
    assert written["fine"]["contrast"] == "dark"
    assert written["pooled"]["contrast"] == "bright/dark" and written["pooled"]["warning"] == "1 of 2 images flagged"
    assert written["pooled"]["flagged_count"] == "1"
