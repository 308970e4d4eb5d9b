"""The scientist's interface end to end: `rformer segment` on a folder of three micrographs (two calibrated
TIFFs, one uncalibrated PNG) with the shipped weights, the summary rebuilt after a resume, `segment()` against
the bundle's mask, the ROI zip read back, calibrated TIFFs, and report.html rendered in headless Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from rformer_monai import segment
from rformer_monai.cli import main
from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.files import write_tiff_atomic
from rformer_monai.transforms.io import read_micrograph

SIZE = (192, 192)
PIXEL_SIZE_NM = 4.0


def _inputs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for index, name in enumerate(("a.tif", "b.tif", "c.png")):
        image, _ = render_micrograph(SIZE, index, mean_diameter_px=20.0, coverage=0.15)
        grey = np.clip(image * 255, 0, 255).astype(np.uint8)
        if name.endswith(".tif"):
            write_tiff_atomic(folder / name, grey, PIXEL_SIZE_NM)  # ImageJ calibration, read back as 'imagej'
        else:
            Image.fromarray(grey).save(folder / name)
    return folder


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("interface")
    inputs = _inputs(root / "in")
    assert main(["segment", str(inputs), "-o", str(root / "out"), "--device", "cpu"]) == 0
    return inputs, root / "out"


@pytest.mark.slow
def test_segment_writes_calibrated_outputs_with_provenance(run) -> None:
    _, out = run
    rows = _read(out / "a_particles.csv")
    assert rows and rows[0]["pixel_size_source"] == "imagej" and float(rows[0]["pixel_size_nm"]) == PIXEL_SIZE_NM
    assert {"Area_nm2", "Feret_nm", "Feret_px", "FeretAngle", "Major_nm", "Circ", "Round", "ECD_nm", "Mean"} <= set(rows[0])
    uncalibrated = _read(out / "c_particles.csv")
    assert uncalibrated[0]["pixel_size_source"] == "unknown" and uncalibrated[0]["ECD_nm"] == ""
    for suffix in ("_labels.tif", "_mask.tif"):
        with tifffile.TiffFile(out / f"a{suffix}") as tif:
            assert tif.imagej_metadata["unit"] == "nm"
        assert read_micrograph(out / f"a{suffix}").meta["pixel_size_nm"] == pytest.approx(PIXEL_SIZE_NM)
    record = json.loads((out / "run.json").read_text())
    assert record["weights"]["sha256"] and record["bundle"]["version"] and "threshold" in record["settings"]
    assert [image["stem"] for image in record["images"]] == ["a", "b", "c"]
    assert record["images"][2]["warnings"] == ["uncalibrated"]


@pytest.mark.slow
def test_summary_gives_the_ranges_of_the_true_count_and_median_ecd(run) -> None:
    inputs, out = run
    errors = json.loads((out / "run.json").read_text())["measurement_errors"]
    assert errors["applied"] is True and "settings" in errors
    count_low, count_high = errors["count"]["low"], errors["count"]["high"]
    ecd_low, ecd_high = errors["ecd_median"]["low"], errors["ecd_median"]["high"]
    rows = _read(out / "summary.csv")
    unflagged = [row for row in rows if row["flagged_count"] == "0" and int(row["particle_count"]) > 0]
    assert unflagged
    for row in rows:
        if row not in unflagged:
            assert row["count_low"] == row["count_high"] == ""
            continue
        count = int(row["particle_count"])
        assert (int(row["count_low"]), int(row["count_high"])) == (round(count / (1 + count_high)), round(count / (1 + count_low)))
        median = float(row["ecd_median"])
        assert float(row["ecd_median_low"]) == pytest.approx(median / (1 + ecd_high), abs=0.01)
        assert float(row["ecd_median_high"]) == pytest.approx(median / (1 + ecd_low), abs=0.01)
    report = (out / "report.html").read_text()
    assert "How wrong these numbers may be" in report
    first = unflagged[0]
    assert f"particles (true likely {first['count_low']}&ndash;{first['count_high']})" in report
    result = segment(inputs / "a.tif", device="cpu")
    assert {key: str(result.summary[key]) for key in ("count_low", "count_high")} == {key: rows[0][key] for key in ("count_low", "count_high")}
    changed = segment(inputs / "a.tif", device="cpu", override={"particle_valley_gain": 4.0})
    assert changed.summary["count_low"] == changed.summary["count_high"] == ""


@pytest.mark.slow
def test_roi_zip_reads_back_one_roi_per_particle(run) -> None:
    roifile = pytest.importorskip("roifile")
    _, out = run
    labels = [int(row["label"]) for row in _read(out / "a_particles.csv")]
    rois = roifile.roiread(out / "a_rois.zip")
    assert [int(roi.name) for roi in rois] == labels
    with zipfile.ZipFile(out / "a_rois.zip") as archive:
        assert len(archive.namelist()) == len(labels)
    particles = _read(out / "a_particles.csv")
    for roi, row in zip(rois, particles):
        points = roi.coordinates()  # the outline runs along the pixel edges: its extent is the bounding box
        np.testing.assert_allclose(points.min(axis=0), [float(row["BX_px"]), float(row["BY_px"])], atol=1e-3)
        extent = np.ptp(points, axis=0)
        np.testing.assert_allclose(extent, [float(row["Width_px"]), float(row["Height_px"])], atol=1e-3)


@pytest.mark.slow
def test_summary_pools_per_unit_and_survives_a_resume(run, tmp_path) -> None:
    inputs, out = run
    summary = _read(out / "summary.csv")
    assert [row["stem"] for row in summary] == ["a", "b", "c", "pooled", "pooled"]
    assert [row["unit"] for row in summary[3:]] == ["nm", "px"]
    assert {"ecd_std", "ecd_cv", "ecd_min", "ecd_max", "ecd_span", "flagged_count"} <= set(summary[0])
    assert int(summary[3]["particle_count"]) == int(summary[0]["particle_count"]) + int(summary[1]["particle_count"])
    assert (out / "size_distribution.png").is_file() and (out / "size_distribution.svg").is_file()
    assert (out / "size_distribution_px.png").is_file()

    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    for path in resumed.glob("b_*"):
        path.unlink()
    (resumed / "summary.csv").unlink()
    assert main(["segment", str(inputs), "-o", str(resumed), "--device", "cpu"]) == 0
    assert (resumed / "summary.csv").read_text() == (out / "summary.csv").read_text()


@pytest.mark.slow
def test_python_segment_equals_the_bundle_mask(run) -> None:
    inputs, out = run
    result = segment(inputs / "a.tif", device="cpu")
    bundle_mask = tifffile.imread(out / "a_mask.tif") > 0
    np.testing.assert_array_equal(result.mask, bundle_mask)
    np.testing.assert_array_equal(result.labels, tifffile.imread(out / "a_labels.tif"))
    assert result.pixel_size_nm == pytest.approx(PIXEL_SIZE_NM) and result.pixel_size_source == "imagej"
    rows = _read(out / "a_particles.csv")
    assert len(rows) == result.count
    assert [float(row["ECD_nm"]) for row in rows] == pytest.approx(result.particles["ECD_nm"].tolist())
    array_result = segment(np.asarray(Image.open(inputs / "c.png")), device="cpu")
    assert array_result.pixel_size_source == "unknown" and array_result.mask.dtype == bool
    given = segment(np.asarray(Image.open(inputs / "c.png")), pixel_size_nm=2.5, device="cpu")
    assert given.pixel_size_source == "given" and given.particles["ECD_nm"][0] > 0


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run, tmp_path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium to render report.html")
    _, out = run
    options = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
    ]
    screenshot = tmp_path / "report.png"
    page = (out / "report.html").as_uri()
    subprocess.run([*options, f"--screenshot={screenshot}", "--window-size=1280,2000", page], check=True, timeout=120,
                   capture_output=True)
    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # text, tables and figures, not a blank page
    dom = subprocess.run([*options, "--dump-dom", page], check=True, timeout=120, capture_output=True, text=True).stdout
    summary = _read(out / "summary.csv")
    assert "Particle report" in dom and "summary.csv" in dom
    for row in summary:
        assert f"<td>{row['particle_count']}</td>" in dom and f"<td>{row['ecd_median']}</td>" in dom
    assert dom.count("<figure>") == 3 and "uncalibrated" in dom
