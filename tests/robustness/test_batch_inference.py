"""Batch inference never loses work: a bad micrograph is listed and skipped, the others are written;
an interrupted run, rerun, finishes the rest and ends with the masks of an uninterrupted run."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from monai.bundle import ConfigWorkflow
from monai.data import DataLoader
from robustness_helpers import CONFIGS, kill_when, last_stderr_line, run_bundle
from tiny_bundle_network import TINY_NETWORK, TINY_RUN

from rformer_monai.data import DatasetLayoutError
from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.files import MASK_SUFFIX
from rformer_monai.reports import PARTICLE_OUTPUT_SUFFIXES
from rformer_monai.transforms import inference_transforms
from rformer_monai.workflows import (
    FailedInputsError,
    FailureLog,
    TolerantDataset,
    find_user_error,
    output_suffixes,
    pending_items,
)
from rformer_monai.workflows.batch import FAILED_REASON_KEY, FAILED_SOURCE_KEY

INFERENCE = CONFIGS / "inference.json"
# five good micrographs (one smaller than the 64x64 window) and one empty file among them
GOOD_SIZES = {"a": (64, 64), "b": (48, 64), "d": (20, 30), "e": (64, 56), "f": (40, 40)}
BAD_NAME = "c_broken.tif"


def write_inputs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for seed, (name, size) in enumerate(GOOD_SIZES.items()):
        image, _ = render_micrograph(size, rng=seed, mean_diameter_px=8.0)
        tifffile.imwrite(folder / f"{name}.tif", image)
    (folder / BAD_NAME).write_bytes(b"")
    return folder


def inference_overrides(tmp_path: Path, inputs: Path, output_dir: Path, **extra) -> dict:
    return {
        "bundle_root": str(tmp_path / "bundle"),
        "dataset_dir": str(inputs),
        "output_dir": str(output_dir),
        **TINY_NETWORK,
        **TINY_RUN,
        **extra,
    }


def run_in_process(overrides: dict) -> BaseException | None:
    """Run inference.json in this process; return the exception the run ends with (None if it succeeds)."""
    workflow = ConfigWorkflow(config_file=str(INFERENCE), workflow_type="infer", logging_file=None, **overrides)
    workflow.initialize()
    try:
        workflow.run()
    except RuntimeError as exc:
        return exc
    finally:
        workflow.finalize()
    return None


def read_failed(output_dir: Path) -> list[dict[str, str]]:
    with (output_dir / "failed.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def mask_files(output_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(output_dir.glob("*_mask.tif"))}


# ------------------------------------------------------------------------------------------
# the pieces


def test_output_suffixes():
    assert output_suffixes() == ["_mask.tif"]
    assert output_suffixes(save_probability="true") == ["_mask.tif", "_prob.tif"]
    analysis = ["_labels.tif", "_particles.csv"]
    assert output_suffixes(False, extra=analysis) == ["_mask.tif", *analysis]


def test_pending_items_skips_complete_inputs_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    datalist = [{"image": f"/data/{name}.tif"} for name in ("a", "b", "c")]
    suffixes = ["_mask.tif", "_particles.csv"]
    for name in ("a_mask.tif", "a_particles.csv", "b_mask.tif"):  # b is missing one of its outputs
        (out / name).touch()
    (out / ".c_mask.tif.x1y2.tmp").write_bytes(b"half")  # left by a killed write
    assert pending_items(datalist, out, suffixes) == datalist[1:]
    assert not (out / ".c_mask.tif.x1y2.tmp").exists()
    assert pending_items(datalist, out, suffixes, overwrite="true") == datalist
    assert pending_items(datalist, out, suffixes, overwrite=False) == datalist[1:]


def test_pending_items_ignores_earlier_outputs_among_the_inputs(tmp_path):
    out = tmp_path / "images" / "out"  # the output folder inside the searched input folder
    out.mkdir(parents=True)
    (out / "a_mask.tif").touch()
    datalist = [{"image": str(tmp_path / "images" / "a.tif")}, {"image": str(out / "a_mask.tif")}]
    assert pending_items(datalist, out, ["_mask.tif"]) == []
    assert pending_items(datalist, out, ["_mask.tif"], overwrite=True) == datalist[:1]


def test_pending_items_rejects_two_inputs_writing_one_output(tmp_path):
    datalist = [{"image": "/data/run1/a.tif"}, {"image": "/data/run2/a.png"}]
    both = r"/data/run1/a.tif and /data/run2/a.png would both be written to .*a_mask.tif"
    with pytest.raises(DatasetLayoutError, match=both):
        pending_items(datalist, tmp_path, ["_mask.tif"])


def test_pending_items_bad_overwrite_value(tmp_path):
    with pytest.raises(ValueError, match="setting 'overwrite' must be true or false, got 'maybe'"):
        pending_items([], tmp_path, ["_mask.tif"], overwrite="maybe")


def test_failure_log_writes_csv_as_failures_happen(tmp_path, caplog):
    path = tmp_path / "failed.csv"
    path.write_text("image,reason\nold.tif,from an earlier run\n")
    log = FailureLog(path)
    assert not path.exists()  # an earlier run's list is gone: its failures are tried again
    log.raise_if_failed()  # nothing failed: no error
    log.count(3)
    log.record("/in/x.tif", "file is empty (0 bytes)")
    assert read_failed(tmp_path) == [{"image": "/in/x.tif", "reason": "file is empty (0 bytes)"}]
    log.record("/in/y,1.tif", "two\nlines")
    assert read_failed(tmp_path)[1] == {"image": "/in/y,1.tif", "reason": "two lines"}
    assert "/in/x.tif: file is empty (0 bytes) (skipped, listed in" in caplog.text
    with pytest.raises(FailedInputsError, match=re.escape(f"2 of 3 images failed, see {path}")):
        log.raise_if_failed()
    assert [p.name for p in tmp_path.iterdir()] == ["failed.csv"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_tolerant_dataset_turns_load_errors_into_records(tmp_path, num_workers):
    inputs = write_inputs(tmp_path / "in")
    (inputs / "g_text.png").write_text("not an image")
    datalist = [{"image": str(path)} for path in sorted(inputs.iterdir())]
    dataset = TolerantDataset(datalist, transform=inference_transforms())
    batches = list(DataLoader(dataset, batch_size=1, num_workers=num_workers))
    failed = {Path(b[FAILED_SOURCE_KEY][0]).name: b[FAILED_REASON_KEY][0] for b in batches if FAILED_SOURCE_KEY in b}
    assert failed == {
        BAD_NAME: "file is empty (0 bytes)",
        "g_text.png": failed["g_text.png"],
    }
    assert failed["g_text.png"].startswith("is not a readable image (truncated or not an image?)")
    good = [b for b in batches if FAILED_SOURCE_KEY not in b]
    assert [tuple(b["image"].shape[2:]) for b in good] == list(GOOD_SIZES.values())


# ------------------------------------------------------------------------------------------
# the bundle's inference workflow


def test_one_bad_micrograph_does_not_stop_the_others(tmp_path, tiny_weights):
    inputs = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    error = run_in_process(inference_overrides(tmp_path, inputs, out))
    user_error = find_user_error(error)
    assert isinstance(user_error, FailedInputsError)
    assert str(user_error) == f"1 of 6 images failed, see {out / 'failed.csv'}"
    assert read_failed(out) == [{"image": str(inputs / BAD_NAME), "reason": "file is empty (0 bytes)"}]
    for name, size in GOOD_SIZES.items():
        mask = tifffile.imread(out / f"{name}_mask.tif")
        assert mask.shape == size and mask.dtype == np.uint8  # padded to the window, cropped back
        assert set(np.unique(mask)) <= {0, 255}

    # a rerun skips the complete inputs; overwrite=true redoes them all
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.tif")}
    error = run_in_process(inference_overrides(tmp_path, inputs, out))
    assert str(find_user_error(error)) == f"1 of 1 images failed, see {out / 'failed.csv'}"
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.tif")} == before
    (inputs / BAD_NAME).unlink()
    assert run_in_process(inference_overrides(tmp_path, inputs, out, overwrite="true")) is None
    assert all(p.stat().st_mtime_ns != before[p.name] for p in out.glob("*_mask.tif"))
    assert not (out / "failed.csv").exists()  # nothing failed this time
    assert run_in_process(inference_overrides(tmp_path, inputs, out)) is None  # nothing left to do


def test_broken_symbolic_link_among_the_inputs_is_listed_as_failed(tmp_path, tiny_weights):
    inputs = write_inputs(tmp_path / "in")
    (inputs / BAD_NAME).unlink()
    link = inputs / "g_link.tif"
    link.symlink_to(tmp_path / "moved" / "g.tif")
    out = tmp_path / "out"
    error = run_in_process(inference_overrides(tmp_path, inputs, out))
    assert str(find_user_error(error)) == f"1 of 6 images failed, see {out / 'failed.csv'}"
    reason = f"is a broken symbolic link: its target {tmp_path / 'moved' / 'g.tif'} does not exist"
    assert read_failed(out) == [{"image": str(link), "reason": reason}]
    assert len(mask_files(out)) == len(GOOD_SIZES)


def test_inference_is_deterministic(tmp_path, tiny_weights):
    inputs = write_inputs(tmp_path / "in")
    (inputs / BAD_NAME).unlink()
    for name in ("first", "second"):
        assert run_in_process(inference_overrides(tmp_path, inputs, tmp_path / name, save_probability=True)) is None
    for path in sorted((tmp_path / "first").glob("*.tif")):
        assert path.read_bytes() == (tmp_path / "second" / path.name).read_bytes(), path.name


@pytest.mark.slow
def test_killed_inference_rerun_finishes_with_the_masks_of_an_uninterrupted_run(tmp_path, tiny_weights):
    inputs = write_inputs(tmp_path / "in")
    reference, out = tmp_path / "reference", tmp_path / "out"
    error = run_in_process(inference_overrides(tmp_path, inputs, reference))
    assert isinstance(find_user_error(error), FailedInputsError)
    expected = mask_files(reference)
    assert len(expected) == len(GOOD_SIZES)

    # an extra config slows the run down (2 s after every image), so that it is killed after one image
    slow = tmp_path / "slow.json"
    handler = {"_target_": "slow_handlers.SleepAfterEach", "event": "ITERATION_COMPLETED", "seconds": 2.0}
    slow.write_text(json.dumps({"handlers": ["@progress_bar", "@run_summary", handler]}))
    overrides = inference_overrides(tmp_path, inputs, out)
    kill_when([INFERENCE, slow], overrides, cwd=tmp_path, ready=lambda: any(out.glob("*_mask.tif")))
    written = mask_files(out)
    assert 1 <= len(written) < len(GOOD_SIZES)
    assert all(expected[name] == content for name, content in written.items())

    # an image is done when all its outputs exist (the kill may fall between its mask and its particle files)
    stems = [name[: -len(MASK_SUFFIX)] for name in written]
    done = [stem for stem in stems if all((out / f"{stem}{suffix}").exists() for suffix in PARTICLE_OUTPUT_SUFFIXES)]

    # the same command again: the rest is done, the bad file listed, a one-line error at the end
    result = run_bundle([INFERENCE], overrides, cwd=tmp_path)
    remaining = len(GOOD_SIZES) - len(done) + 1
    assert result.returncode != 0
    assert last_stderr_line(result.stderr) == f"error: 1 of {remaining} images failed, see {out / 'failed.csv'}"
    assert "Traceback" not in result.stderr
    assert read_failed(out) == [{"image": str(inputs / BAD_NAME), "reason": "file is empty (0 bytes)"}]
    assert mask_files(out) == expected  # byte for byte
    assert not list(out.glob(".*")), "temporary files left behind"
