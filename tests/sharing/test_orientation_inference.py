"""The bundle's test_time_orientations switch, end to end through inference.json."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from sharing_helpers import run_inference, write_micrograph

PROBABILITY_TOLERANCE = 1e-5
WINDOW_SIDE = 64  # the tiny run's roi_size: one window covers the whole image, so mirroring moves no window


def _probabilities(bundle, folder, output_dir, enabled):
    run_inference(bundle, folder, output_dir, save_probability=True, test_time_orientations=enabled)
    return {path.stem.removesuffix("_prob"): tifffile.imread(path) for path in output_dir.glob("*_prob.tif")}


@pytest.mark.parametrize("enabled, equivariant", [("true", True), (False, False)])
def test_mirrored_micrograph_gives_the_mirrored_probability_only_with_orientations(tiny_bundle, tmp_path, enabled, equivariant):
    inputs = tmp_path / "in"
    path = write_micrograph(inputs, "grains", size=(WINDOW_SIDE, WINDOW_SIDE))
    tifffile.imwrite(inputs / "mirrored.tif", np.ascontiguousarray(tifffile.imread(path)[:, ::-1]))

    probability = _probabilities(tiny_bundle, inputs, tmp_path / "out", enabled)

    difference = np.abs(probability["mirrored"][:, ::-1] - probability["grains"]).max()
    assert (difference < PROBABILITY_TOLERANCE) == equivariant, difference
