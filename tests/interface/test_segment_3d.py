"""`rformer segment-3d` on a small synthetic stack with the shipped weights: the bundle's 3-D workflow runs and
writes the labels to scale and the particle table, with the spacing read from the file or given on the command."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel
import numpy as np
import pytest

from rformer_monai.cli import main
from rformer_monai.volumes import PARTICLE_COLUMNS_3D, STACK_OUTPUT_SUFFIXES, make_synthetic_stacks

STEM = "synthetic_stack_000"
FILE_SPACING_NM = (15.0, 7.5, 7.5)  # the generator's default, written into the ImageJ TIFF
GIVEN_SPACING_NM = (20.0, 10.0, 10.0)
NM_PER_MICROMETRE = 1000.0


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stacks")
    return Path(make_synthetic_stacks(folder, shape=(24, 96, 96), num_separate=3, num_touching_pairs=1,
                                      diameter_range_nm=(110.0, 160.0)))


def _segment_3d(stacks: Path, output: Path, *options: str) -> None:
    arguments = ["segment-3d", str(stacks), "-o", str(output), "--device", "cpu", *options]
    assert main(arguments) == 0


def _zooms_nm(path: Path) -> tuple[float, ...]:
    header = nibabel.load(str(path)).header
    assert header.get_xyzt_units()[0] == "micron"
    x, y, z = header.get_zooms()
    return tuple(float(value) * NM_PER_MICROMETRE for value in (z, y, x))


@pytest.mark.slow
def test_segment_3d_writes_labels_to_scale_and_the_particle_table(stacks: Path, tmp_path: Path) -> None:
    _segment_3d(stacks, tmp_path / "out")
    for suffix in STACK_OUTPUT_SUFFIXES:
        assert (tmp_path / "out" / f"{STEM}{suffix}").is_file(), suffix
    labels_path = tmp_path / "out" / f"{STEM}_labels.nii.gz"
    assert _zooms_nm(labels_path) == pytest.approx(FILE_SPACING_NM)
    labels = np.asarray(nibabel.load(str(labels_path)).dataobj)
    assert labels.shape == (96, 96, 24)  # NIfTI stores x, y, z
    with open(tmp_path / "out" / f"{STEM}_particles.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert table and tuple(table[0]) == PARTICLE_COLUMNS_3D
    assert [int(row["label"]) for row in table] == list(range(1, int(labels.max()) + 1))
    with open(tmp_path / "out" / "summary_3d.csv", newline="") as handle:
        summary = next(csv.DictReader(handle))
    assert int(summary["particles"]) == len(table)


@pytest.mark.slow
def test_segment_3d_spacing_overrides_the_files(stacks: Path, tmp_path: Path) -> None:
    _segment_3d(stacks, tmp_path / "out", "--spacing-nm", *(str(value) for value in GIVEN_SPACING_NM))
    assert _zooms_nm(tmp_path / "out" / f"{STEM}_labels.nii.gz") == pytest.approx(GIVEN_SPACING_NM)
    with open(tmp_path / "out" / "summary_3d.csv", newline="") as handle:
        summary = next(csv.DictReader(handle))
    spacing = tuple(float(summary[f"spacing_{axis}_nm"]) for axis in "zyx")
    assert spacing == pytest.approx(GIVEN_SPACING_NM)


def test_segment_3d_rejects_a_bad_spacing(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["segment-3d", str(tmp_path), "-o", str(tmp_path / "out"), "--spacing-nm", "15", "0", "7.5"])
    assert "must be a positive number" in capsys.readouterr().err
