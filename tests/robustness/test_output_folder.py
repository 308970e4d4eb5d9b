"""The output folder is checked before any work (a file, a path under a file, a folder that cannot be written:
one line naming it, non-zero exit, for inference and training), and one run at a time writes into it: a second
run ends at once and cannot remove the first one's temporary files."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import tifffile
from monai.bundle import ConfigWorkflow
from robustness_helpers import CONFIGS, last_stderr_line, run_bundle, subprocess_env, train_config_files
from tiny_bundle_network import TINY_NETWORK, TINY_RUN

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.workflows import OutputFolderError, claim_output_folder, find_user_error, require_writable_folder

INFERENCE = CONFIGS / "inference.json"


def write_input(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = render_micrograph((48, 48), rng=0, mean_diameter_px=8.0)
    tifffile.imwrite(folder / "a.tif", image)
    return folder


def refuse_to_write(*args, **kwargs):
    """``tempfile.mkstemp`` on a folder that cannot be written (read-only mount; chmod does not stop root)."""
    raise PermissionError(13, "Permission denied")


def inference_settings(tmp_path: Path, output_dir: Path) -> dict:
    # no weights in bundle/models: were the network loaded before the check, the error would be "checkpoint not found"
    return {
        "bundle_root": str(tmp_path / "bundle"),
        "dataset_dir": str(write_input(tmp_path / "in")),
        "output_dir": str(output_dir),
        **TINY_NETWORK,
        **TINY_RUN,
    }


# ------------------------------------------------------------------------------------------
# the checks


def test_require_writable_folder(tmp_path, monkeypatch):
    file = tmp_path / "notes.txt"
    file.write_text("a file")
    with pytest.raises(OutputFolderError, match=f"^{file}: output folder is a file, not a folder"):
        require_writable_folder(file)
    with pytest.raises(
        OutputFolderError, match=f"^{file / 'out'}: output folder cannot be created \\(Not a directory\\)"
    ):
        require_writable_folder(file / "out")
    assert require_writable_folder(tmp_path / "new" / "out").is_dir()
    assert list((tmp_path / "new" / "out").iterdir()) == []  # the probe is removed
    monkeypatch.setattr(tempfile, "mkstemp", refuse_to_write)
    with pytest.raises(OutputFolderError, match=f"^{tmp_path / 'new'}: output folder cannot be written \\(Permission"):
        require_writable_folder(tmp_path / "new")


@pytest.mark.parametrize("under_a_file", [False, True], ids=["a-file", "under-a-file"])
def test_inference_into_a_file_ends_with_one_line_before_any_work(tmp_path, under_a_file):
    file = tmp_path / "results.csv"
    file.write_text("a file, not a folder")
    output_dir = file / "masks" if under_a_file else file
    result = run_bundle([INFERENCE], inference_settings(tmp_path, output_dir), cwd=tmp_path)
    assert result.returncode != 0
    problem = "output folder cannot be created (Not a directory)" if under_a_file else "output folder is a file"
    assert last_stderr_line(result.stderr).startswith(f"error: {output_dir}: {problem}")
    assert "Traceback" not in result.stderr
    assert "checkpoint" not in result.stderr  # the network was never loaded


def test_inference_into_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "mkstemp", refuse_to_write)
    workflow = ConfigWorkflow(
        config_file=str(INFERENCE),
        workflow_type="infer",
        logging_file=None,
        **inference_settings(tmp_path, tmp_path / "out"),
    )
    with pytest.raises(RuntimeError) as error:
        workflow.initialize()  # the check is in "initialize": nothing is built or read before it
    assert str(find_user_error(error.value)) == (
        f"{tmp_path / 'out'}: output folder cannot be written (Permission denied): check its permissions and free "
        "space, or pass another --output_dir"
    )


@pytest.mark.parametrize("folder", ["output_dir", "ckpt_dir"])
def test_training_into_a_file_ends_with_one_line_before_any_work(tmp_path, folder):
    file = tmp_path / "results.csv"
    file.write_text("a file, not a folder")
    workflow = ConfigWorkflow(
        config_file=[str(path) for path in train_config_files(tmp_path)],
        workflow_type="train",
        logging_file=None,
        bundle_root=str(tmp_path / "bundle"),
        **{folder: str(file)},
        **TINY_NETWORK,
    )
    with pytest.raises(RuntimeError) as error:
        workflow.initialize()
    assert isinstance(find_user_error(error.value), OutputFolderError)
    assert str(find_user_error(error.value)).startswith(f"{file}: output folder is a file, not a folder")


# ------------------------------------------------------------------------------------------
# one run at a time


HOLD_THE_FOLDER = textwrap.dedent(
    """
    import sys
    from rformer_monai.workflows import claim_output_folder
    claim_output_folder(sys.argv[1])
    print("claimed", flush=True)
    sys.stdin.read()  # hold the lock until the test closes stdin
    """
)


def test_a_second_run_cannot_remove_the_first_runs_temporary_files(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_FOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=subprocess_env(),
        text=True,
    )
    try:
        assert first.stdout.readline().strip() == "claimed"
        in_progress = out / ".a_mask.tif.k2j4.tmp"  # the first run's mask, half written
        in_progress.write_bytes(b"half a mask")

        # the second run: the same folder, the same input, so a.tif's leftovers would be removed
        result = run_bundle([INFERENCE], inference_settings(tmp_path, out), cwd=tmp_path)
        assert result.returncode != 0
        line = last_stderr_line(result.stderr)
        assert line == (
            f"error: {out}: another run is writing into this output folder: wait for it to end, or pass another "
            f"--output_dir (traceback in {out / 'error.log'})"
        )
        assert in_progress.read_bytes() == b"half a mask"
    finally:
        first.stdin.close()
        first.wait(timeout=30)

    # the first run is over (the kernel released its lock): the folder can be claimed, its leftovers are fair game
    assert claim_output_folder(out) == out
    assert sorted(path.name for path in out.iterdir()) == [".a_mask.tif.k2j4.tmp", "error.log"]  # no lock file
