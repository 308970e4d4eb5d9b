"""The bundle's tta setting, end to end through inference.json."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from sharing_helpers import run_inference, write_micrograph

PROBABILITY_TOLERANCE = 1e-5
WINDOW_SIDE = 64  # the tiny run's roi_size: one window covers the whole image, so mirroring moves no window


@pytest.mark.parametrize("tta, equivariant", [("dihedral", True), ("flips", True), (None, False)])
def test_mirrored_micrograph_gives_the_mirrored_probability_only_with_tta(tiny_bundle, tmp_path, tta, equivariant):
    inputs = tmp_path / "in"
    path = write_micrograph(inputs, "grains", size=(WINDOW_SIDE, WINDOW_SIDE))
    tifffile.imwrite(inputs / "mirrored.tif", np.ascontiguousarray(tifffile.imread(path)[:, ::-1]))

    run_inference(tiny_bundle, inputs, tmp_path / "out", save_probability=True, tta=tta)

    probability = {name: tifffile.imread(tmp_path / "out" / f"{name}_prob.tif") for name in ("grains", "mirrored")}
    difference = np.abs(probability["mirrored"][:, ::-1] - probability["grains"]).max()
    assert (difference < PROBABILITY_TOLERANCE) == equivariant, difference
