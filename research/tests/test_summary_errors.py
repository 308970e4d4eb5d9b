"""research.summary_errors: the true summary of a manual mask, the per-image errors of a fold's held-out images
analysed by the bundle, and the metadata block that the run summary's ranges are read from."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile

from research import summary_errors
from research.cv import BUNDLE_CONFIGS
from rformer_monai.particles.labelling import label_particles, remove_small_particles
from rformer_monai.reports.uncertainty import MEASUREMENT_ERRORS_KEY, MeasurementErrors, applicable_errors

SHIPPED_WEIGHTS = BUNDLE_CONFIGS.parent / "models" / "model.pt"


def _record(height: int, width: int, data_bar_rows: int = 0, pixel_size_nm: float | None = 2.0) -> dict:
    return {
        "stem": "mask",
        "unit": "px" if pixel_size_nm is None else "nm",
        "pixel_size_nm": pixel_size_nm,
        "pixel_size_source": "given",
        "height_px": height,
        "width_px": width,
        "data_bar_rows": data_bar_rows,
        "sample_area": float((height - data_bar_rows) * width * (pixel_size_nm or 1.0) ** 2),
    }


def test_true_summary_counts_the_particles_above_the_data_bar_of_the_smallest_size_and_more() -> None:
    mask = np.zeros((60, 60), dtype=np.uint8)
    mask[5:15, 5:15] = 1  # 100 px, off the border
    mask[5:15, 15:25] = 1  # beside it: 4-connected to it, so one particle of 200 px
    mask[30:33, 30:33] = 1  # 9 px: under the smallest size
    mask[20:28, 40:48] = 1  # 64 px
    mask[50:58, 10:18] = 1  # in the data bar's rows
    true = summary_errors.true_summary(mask, _record(60, 60, data_bar_rows=12), min_size_px=10)
    assert true["particle_count"] == 2 and true["measured_count"] == 2
    diameters = [2.0 * np.sqrt(area / np.pi) * 2.0 for area in (200, 64)]  # in nm at 2 nm per pixel
    assert true["ecd_median"] == pytest.approx(np.median(diameters), abs=0.01)


def test_image_errors_are_reported_over_true_minus_one() -> None:
    errors = summary_errors.image_errors({"particle_count": 75, "ecd_median": 55.0}, {"particle_count": 100, "ecd_median": 50.0})
    assert errors == pytest.approx({"count": -0.25, "ecd_median": 0.1})
    assert np.isnan(summary_errors.image_errors({"particle_count": 3, "ecd_median": 1.0}, {"particle_count": 0, "ecd_median": 0.0})["count"])


@pytest.mark.slow
def test_a_fold_of_held_out_images_gives_the_metadata_block_that_applies_to_its_weights(tiny_dataset, tmp_path) -> None:
    fold_dir = tmp_path / "cv" / "fold_0"
    fold_dir.mkdir(parents=True)
    held_out = ["tiny_1.tif", "tiny_2.tif"]
    (fold_dir / "split.json").write_text(json.dumps({"split_seed": 0, "num_folds": 2, "held_out_images": held_out}))
    shutil.copyfile(SHIPPED_WEIGHTS, fold_dir / "model.pt")
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    metadata = bundle / "configs" / "metadata.json"
    shutil.copyfile(BUNDLE_CONFIGS / "metadata.json", metadata)
    before = {key: value for key, value in json.loads(metadata.read_text()).items() if key != MEASUREMENT_ERRORS_KEY}

    arguments = ["--dataset_dir", str(tiny_dataset), "--cv_dir", str(tmp_path / "cv"), "--weights", str(SHIPPED_WEIGHTS)]
    assert summary_errors.main([*arguments, "--metadata", str(metadata)]) == 0

    results = json.loads((tmp_path / "cv" / summary_errors.RESULTS_NAME).read_text())
    assert [row["image"] for row in results["images"]] == held_out
    for row in results["images"]:
        record = json.loads((fold_dir / summary_errors.RUN_FOLDER / row["image"].replace(".tif", "_image.json")).read_text())
        mask = tifffile.imread(tiny_dataset / "masks" / row["image"].replace(".tif", "_mask.tif"))
        sample = mask[: record["height_px"] - record["data_bar_rows"]]
        assert row["true_particle_count"] == int(remove_small_particles(label_particles(sample), 10).max())
        assert row["reported_particle_count"] == record["particle_count"]
        assert row["count_error"] == pytest.approx(row["reported_particle_count"] / row["true_particle_count"] - 1)

    after = json.loads(metadata.read_text())
    assert {key: value for key, value in after.items() if key != MEASUREMENT_ERRORS_KEY} == before
    errors = MeasurementErrors.from_metadata(after[MEASUREMENT_ERRORS_KEY])
    assert errors.images == 2 and errors.settings["particle_valley_gain"] == 0.0
    counts = sorted(row["count_error"] for row in results["images"])
    assert counts[0] <= errors.count.low <= errors.count.median <= errors.count.high <= counts[1]

    settings = {**errors.settings, "ckpt_path": str(SHIPPED_WEIGHTS)}
    assert applicable_errors(bundle, settings) == (errors, "")
