"""Reading stacks with their voxel spacing: ImageJ TIFF, NIfTI, MHA and NRRD; writing labels to scale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rformer_monai.volumes import (
    StackReadError,
    find_stacks,
    open_stack,
    stack_stem,
    write_labels_nifti,
    write_labels_tiff,
)
from rformer_monai.volumes.outputs import write_imagej_stack

SPACING_NM = (30.0, 7.5, 5.0)  # z, y, x: every axis different, so a swapped axis shows


def _volume(shape=(5, 12, 16), dtype=np.uint16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)


def test_imagej_tiff_round_trip_keeps_anisotropic_spacing(tmp_path: Path) -> None:
    volume = _volume()
    path = write_imagej_stack(tmp_path / "stack.tif", volume, SPACING_NM)
    with open_stack(path) as source:
        assert source.shape == volume.shape
        assert source.spacing_nm == pytest.approx(SPACING_NM, rel=1e-5)
        assert source.spacing_source == "imagej"
        np.testing.assert_array_equal(source.read(), volume)


# ImageJ writes the micro sign escaped
@pytest.mark.parametrize("unit, scale", [("nm", 1.0), ("micron", 1000.0), ("\\u00B5m", 1000.0)])
def test_imagej_units_are_converted_to_nm(write_tiff, unit: str, scale: float) -> None:
    volume = _volume()
    z, y, x = (value / scale for value in SPACING_NM)
    path = write_tiff("u.tif", volume, imagej=True, resolution=(1 / x, 1 / y), metadata={"spacing": z, "unit": unit})
    with open_stack(path) as source:
        assert source.spacing_nm == pytest.approx(SPACING_NM, rel=1e-5)


def test_compressed_tiff_is_read_page_by_page(write_tiff) -> None:
    volume = _volume()
    path = write_tiff("c.tif", volume, imagej=True, compression="zlib", resolution=(1 / 5.0, 1 / 7.5),
                      metadata={"spacing": 30.0, "unit": "nm"})
    with open_stack(path) as source:
        np.testing.assert_array_equal(source.read_slice(3), volume[3])
        assert source.spacing_nm == pytest.approx(SPACING_NM, rel=1e-5)


def test_tiff_without_spacing_is_in_voxels_and_override_wins(write_tiff) -> None:
    path = write_tiff("plain.tif", _volume())
    with open_stack(path) as source:
        assert source.spacing_nm == (1.0, 1.0, 1.0)
        assert source.spacing_source == "unknown"
    with open_stack(path, spacing_nm=SPACING_NM) as source:
        assert source.spacing_nm == SPACING_NM
        assert source.spacing_source == "override"


def test_nifti_round_trip_in_micrometres(tmp_path: Path) -> None:
    import nibabel

    labels = _volume(dtype=np.int32)
    path = write_labels_nifti(tmp_path / "a_labels.nii.gz", labels, SPACING_NM)
    header = nibabel.load(str(path)).header
    assert header.get_xyzt_units()[0] == "micron"
    # NIfTI stores x, y, z: the zooms are the spacing reversed, in micrometres
    assert header.get_zooms()[:3] == pytest.approx([value / 1000 for value in SPACING_NM[::-1]], rel=1e-6)
    with open_stack(path) as source:
        assert source.spacing_nm == pytest.approx(SPACING_NM, rel=1e-5)
        np.testing.assert_array_equal(source.read(), labels)
    assert stack_stem(path) == "a_labels"


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_formats_read_with_spacing(tmp_path: Path, suffix: str) -> None:
    itk = pytest.importorskip("itk")
    volume = _volume(dtype=np.uint8)
    image = itk.image_from_array(volume)
    image.SetSpacing([SPACING_NM[2], SPACING_NM[1], SPACING_NM[0]])  # ITK spacing is x, y, z
    path = tmp_path / f"stack{suffix}"
    itk.imwrite(image, str(path))
    with open_stack(path) as source:
        assert source.shape == volume.shape
        assert source.spacing_nm == pytest.approx(SPACING_NM)
        np.testing.assert_array_equal(source.read(), volume)


def test_labels_tiff_opens_to_scale(tmp_path: Path) -> None:
    labels = _volume(dtype=np.int32)
    path = write_labels_tiff(tmp_path / "l.tif", labels, SPACING_NM)
    with tifffile.TiffFile(path) as tif:
        assert tif.imagej_metadata["unit"] == "nm"
        assert tif.imagej_metadata["spacing"] == pytest.approx(SPACING_NM[0])
        assert tif.series[0].dtype == np.uint16
    with open_stack(path) as source:
        np.testing.assert_array_equal(source.read(), labels)


def test_bad_inputs_name_the_file(tmp_path: Path, write_tiff) -> None:
    with pytest.raises(StackReadError, match="not a stack file"):
        open_stack(tmp_path / "a.png")
    with pytest.raises(StackReadError, match="no such file"):
        open_stack(tmp_path / "missing.tif")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    with pytest.raises(StackReadError, match="broken.nii.gz"):
        open_stack(broken)
    with pytest.raises(ValueError, match="spacing_nm"):
        open_stack(write_tiff("ok.tif", _volume()), spacing_nm=(1.0, -1.0, 1.0))
    with pytest.raises(FileNotFoundError, match="holds no stack"):
        find_stacks(tmp_path / "empty") if (tmp_path / "empty").mkdir() is None else None


def test_find_stacks_recursive(tmp_path: Path) -> None:
    for name in ("a.tif", "sub/b.nii.gz", "sub/c.mha", "sub/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in find_stacks(tmp_path)] == ["a.tif", "b.nii.gz", "c.mha"]


def test_everything_but_mha_and_nrrd_works_without_itk(tmp_path: Path) -> None:
    """MONAI itself imports ITK where it is installed; our code imports it only to open MHA/NRRD, so with ITK
    absent (blocked here) the 2-D path and the TIFF/NIfTI stacks work, and an MHA names the missing extra."""
    write_imagej_stack(tmp_path / "s.tif", _volume(), SPACING_NM)
    (tmp_path / "s.mha").write_bytes(b"")
    code = f"""
import sys
sys.modules["itk"] = None  # import itk now raises ImportError
import rformer_monai, rformer_monai.inference, rformer_monai.workflows, rformer_monai.volumes as volumes
assert volumes.open_stack({str(tmp_path / "s.tif")!r}).shape == (5, 12, 16)
try:
    volumes.open_stack({str(tmp_path / "s.mha")!r})
except volumes.StackReadError as exc:
    assert "rformer-monai[volumes]" in str(exc), exc
else:
    raise SystemExit("no error")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
