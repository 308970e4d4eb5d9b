"""Slice-by-slice segmentation of stacks: outputs, streaming, orthogonal averaging, and the bundle run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer

from rformer_monai.volumes import STACK_OUTPUT_SUFFIXES, make_synthetic_stacks, open_stack, segment_stacks
from rformer_monai.volumes.outputs import write_imagej_stack
from rformer_monai.volumes.segment import predict_stack_probability

REPOSITORY = Path(__file__).resolve().parents[2]
BUNDLE = REPOSITORY / "bundles" / "residualformer_sem"
SPACING_NM = (15.0, 7.5, 7.5)


class BrightIsParticle(torch.nn.Module):
    """A stand-in network: logits that make normalised grey levels above 0.45 particle; records input shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(40.0))
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(image.shape))
        return self.scale * (image - 0.45)


def _inferer() -> SlidingWindowInferer:
    return SlidingWindowInferer(roi_size=(64, 64), sw_batch_size=2, overlap=0.25)


def _clean_stack(tmp_path: Path, spacing=SPACING_NM) -> Path:
    """Two bright separate spheres on a dark background (no noise), as an ImageJ TIFF."""
    depth, size = 24, 64
    z, y, x = np.meshgrid(*((np.arange(side) + 0.5) * step for side, step in zip((depth, size, size), spacing)),
                          indexing="ij")
    volume = np.full((depth, size, size), 20, np.uint8)
    for centre in ((180.0, 150.0, 150.0), (180.0, 330.0, 330.0)):
        inside = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= 80.0**2
        volume[inside] = 200
    return write_imagej_stack(tmp_path / "in" / "clean.tif", volume, spacing)


def test_segment_stacks_writes_every_output_to_scale(tmp_path: Path) -> None:
    _clean_stack(tmp_path)
    network = BrightIsParticle()
    rows = segment_stacks(tmp_path / "in", tmp_path / "out", network, _inferer(), "cpu")
    for suffix in STACK_OUTPUT_SUFFIXES:
        assert (tmp_path / "out" / f"clean{suffix}").is_file(), suffix
    assert not list((tmp_path / "out").glob(".*_work"))  # the memory-mapped probability is removed
    # the network only ever saw one 2-D window batch at a time
    assert {shape[1:] for shape in network.shapes} == {(1, 64, 64)}
    assert rows[0]["particles"] == 2
    with open(tmp_path / "out" / "clean_particles.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [float(row["esd_nm"]) for row in table] == pytest.approx([160.0, 160.0], rel=0.03)
    header = nibabel.load(str(tmp_path / "out" / "clean_labels.nii.gz")).header
    assert header.get_xyzt_units()[0] == "micron"
    assert header.get_zooms() == pytest.approx((0.0075, 0.0075, 0.015))
    with open_stack(tmp_path / "out" / "clean_labels.tif") as labels:
        assert labels.spacing_nm == pytest.approx(SPACING_NM, rel=1e-5)
    # a rerun skips the finished stack
    assert segment_stacks(tmp_path / "in", tmp_path / "out", network, _inferer(), "cpu") == []


def test_orthogonal_averaging_needs_isotropic_spacing(tmp_path: Path) -> None:
    source = open_stack(_clean_stack(tmp_path))
    output = np.zeros(source.shape, np.uint8)
    with pytest.raises(ValueError, match="near-isotropic"):
        predict_stack_probability(source, output, BrightIsParticle(), _inferer(), torch.device("cpu"),
                                  orthogonal=True, work_dir=tmp_path)


def test_orthogonal_averaging_agrees_on_a_clean_isotropic_stack(tmp_path: Path) -> None:
    source = open_stack(_clean_stack(tmp_path, spacing=(7.5, 7.5, 7.5)))
    single, averaged = np.zeros(source.shape, np.uint8), np.zeros(source.shape, np.uint8)
    predict_stack_probability(source, single, BrightIsParticle(), _inferer(), torch.device("cpu"), progress=False)
    predict_stack_probability(source, averaged, BrightIsParticle(), _inferer(), torch.device("cpu"),
                              orthogonal=True, work_dir=tmp_path, progress=False)
    # the stand-in network is pointwise, so every direction gives the same probability
    assert np.abs(single.astype(int) - averaged).max() <= 1


def test_failed_stack_is_listed_and_the_run_fails(tmp_path: Path) -> None:
    _clean_stack(tmp_path)
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"no")
    with pytest.raises(Exception, match="1 of 2"):
        segment_stacks(tmp_path / "in", tmp_path / "out", BrightIsParticle(), _inferer(), "cpu")
    assert "broken.nii.gz" in (tmp_path / "out" / "failed.csv").read_text()
    assert (tmp_path / "out" / "clean_labels.nii.gz").is_file()


@pytest.mark.slow
def test_bundle_run_segments_a_synthetic_stack_with_the_shipped_weights(tmp_path: Path) -> None:
    images = make_synthetic_stacks(tmp_path / "synthetic", shape=(24, 96, 96), num_separate=3,
                                   num_touching_pairs=1, diameter_range_nm=(110.0, 160.0))
    configs = "['bundles/residualformer_sem/configs/inference.json','bundles/residualformer_sem/configs/inference_3d.json']"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs, "--bundle_root", str(BUNDLE),
         "--dataset_dir", images, "--output_dir", str(tmp_path / "out"), "--device", "cpu"],
        cwd=REPOSITORY, capture_output=True, text=True, env=environment, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for suffix in STACK_OUTPUT_SUFFIXES:
        assert (tmp_path / "out" / f"synthetic_stack_000{suffix}").is_file(), suffix
    with open(tmp_path / "out" / "summary_3d.csv", newline="") as handle:
        summary = next(csv.DictReader(handle))
    assert int(summary["particles"]) >= 1
    assert float(summary["spacing_z_nm"]) == pytest.approx(15.0)
