"""Bad inputs, one by one: each gets one clear line naming the file (or setting) and the problem, or is
accepted with a note in the log; user errors end a bundle run with ``error: ...`` on stderr and the
traceback in ``<output_dir>/error.log``."""

from __future__ import annotations

import logging
import os
import re
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigWorkflow
from PIL import Image
from robustness_helpers import CONFIGS, train_config_files
from tiny_bundle_network import TINY_NETWORK, TINY_RUN

from rformer_monai.data import DatasetLayoutError, discover_pairs, inference_datalist
from rformer_monai.networks import CheckpointError
from rformer_monai.transforms import (
    MaskShapeError,
    MicrographReadError,
    inference_transforms,
    read_micrograph,
    validation_transforms,
)
from rformer_monai.transforms.io import MAX_IMAGE_PIXELS, check_pixel_count
from rformer_monai.workflows import (
    FailedInputsError,
    ResumeFromCheckpoint,
    SettingsError,
    as_bool,
    check_settings,
    find_user_error,
    install_error_reporting,
)
from rformer_monai.workflows.batch import describe_failure
from rformer_monai.workflows.errors import ErrorReporter, describe_error, one_line

INFERENCE = CONFIGS / "inference.json"


def noise(shape: tuple[int, ...], dtype=np.uint8, seed: int = 0) -> np.ndarray:
    full_scale = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    values = np.random.default_rng(seed).uniform(0, full_scale, size=shape)
    return values.astype(dtype)


# ------------------------------------------------------------------------------------------
# files that cannot be a micrograph: one line naming the file and the problem


def truncated_tiff(path: Path) -> None:
    tifffile.imwrite(path, noise((64, 64), np.uint16))
    path.write_bytes(path.read_bytes()[:300])


def make_folder(path: Path) -> None:
    path.mkdir()


BOMB_SIDE = 100_000
"""Width and height a crafted header claims: 1e10 pixels, over ``MAX_IMAGE_PIXELS``."""


def tiff_bomb(path: Path, side: int = BOMB_SIDE) -> None:
    """A TIFF of a few hundred bytes whose header claims ``side`` x ``side`` deflate-compressed 8-bit pixels."""
    data = zlib.compress(bytes(1000))
    short, long = 3, 4
    tags = [
        (256, long, side),  # ImageWidth
        (257, long, side),  # ImageLength
        (258, short, 8),  # BitsPerSample
        (259, short, 8),  # Compression: deflate
        (262, short, 1),  # PhotometricInterpretation: min-is-black
        (273, long, 0),  # StripOffsets, set below
        (277, short, 1),  # SamplesPerPixel
        (278, long, side),  # RowsPerStrip
        (279, long, len(data)),  # StripByteCounts
    ]
    data_offset = 8 + 2 + 12 * len(tags) + 4
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_offset if tag == 273 else value
        field = struct.pack("<HH", value, 0) if kind == short else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + field
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data)


def png_bomb(path: Path, side: int = BOMB_SIDE) -> None:
    """A small PNG whose header (IHDR) is rewritten to claim ``side`` x ``side`` pixels."""
    Image.fromarray(noise((8, 8))).save(path)
    content = bytearray(path.read_bytes())
    content[16:24] = struct.pack(">II", side, side)
    content[29:33] = struct.pack(">I", zlib.crc32(bytes(content[12:29])))
    path.write_bytes(bytes(content))


def broken_link(path: Path) -> None:
    path.symlink_to(path.with_name("moved_away.tif"))


BAD_FILES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "empty": ("empty.tif", lambda p: p.touch(), "file is empty (0 bytes)"),
    "truncated-tiff": ("cut.tif", truncated_tiff, "is not a readable TIFF (truncated or corrupt?)"),
    "text-as-tiff": ("notes.tif", lambda p: p.write_text("not an image\n" * 20), "is not a readable TIFF"),
    "text-as-png": ("notes.png", lambda p: p.write_text("not an image\n" * 20), "is not a readable image"),
    "multi-page": (
        "stack.tif",
        lambda p: tifffile.imwrite(p, noise((3, 16, 16)), photometric="minisblack"),
        "is a multi-page TIFF (3 pages): only single-page 2-D micrographs are supported",
    ),
    "3-d-page": (
        "volume.tif",
        lambda p: tifffile.imwrite(p, noise((16, 16, 5)), photometric="minisblack", planarconfig="contig"),
        "only single 2-D micrographs (grey, RGB, RGBA or palette, one page) are supported",
    ),
    "nan-pixels": (
        "nan.tif",
        lambda p: tifffile.imwrite(p, np.where(np.eye(8) > 0, np.nan, 0.5).astype(np.float32)),
        "holds 8 pixels that are not finite numbers (NaN or infinity)",
    ),
    "complex": ("complex.tif", lambda p: tifffile.imwrite(p, np.ones((8, 8), np.complex64)), "holds complex64 values"),
    "folder": ("folder.tif", make_folder, "is a folder, not an image file"),
    "missing": ("absent.tif", lambda p: None, "no such file"),
    "broken-symlink": ("link.tif", broken_link, "is a broken symbolic link: its target "),
    "tiff-bomb": (
        "bomb.tif",
        tiff_bomb,
        f"its header claims 100000 x 100000 = 10000000000 pixels, more than the limit of {2**31}",
    ),
    "png-bomb": ("bomb.png", png_bomb, "its header claims 100000 x 100000 = 10000000000 pixels, more than the limit"),
    "unsupported-type": ("image.gif", lambda p: p.write_bytes(b"GIF89a"), "unsupported file type '.gif'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_file_is_one_clear_line_naming_it(tmp_path, case):
    name, make, problem = BAD_FILES[case]
    path = tmp_path / name
    make(path)
    with pytest.raises(MicrographReadError) as error:
        read_micrograph(path)
    assert error.value.path == str(path)
    assert problem in error.value.problem
    assert str(error.value) == f"{path}: {error.value.problem}"
    assert "\n" not in str(error.value)

    # through the whole inference pipeline (MONAI wraps it): the same error, and one line for failed.csv
    with pytest.raises(Exception) as wrapped:
        inference_transforms()({"image": str(path)})
    assert find_user_error(wrapped.value) is not None
    assert str(find_user_error(wrapped.value)) == str(error.value)
    assert describe_failure(str(path), wrapped.value) == one_line(error.value.problem)


def test_pixel_limit_lets_large_montages_through_and_leaves_pillow_as_it_was(tmp_path):
    check_pixel_count("montage.tif", (20_000, 20_000))  # 4e8 pixels: a legitimate stitched montage
    with pytest.raises(MicrographReadError, match="montage.tif: its header claims 20000 x 20000 = 400000000 pixels"):
        check_pixel_count("montage.tif", (20_000, 20_000), max_pixels=10**8)
    assert MAX_IMAGE_PIXELS == 2**31
    limit = Image.MAX_IMAGE_PIXELS
    png_bomb(tmp_path / "bomb.png")
    with pytest.raises(MicrographReadError):
        read_micrograph(tmp_path / "bomb.png")
    assert Image.MAX_IMAGE_PIXELS == limit


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.tif"
    tifffile.imwrite(path, noise((8, 8)))
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != path)  # as for another user's 0600 file
    with pytest.raises(MicrographReadError, match=re.escape(f"{path}: file is not readable (check its permissions)")):
        read_micrograph(path)


# ------------------------------------------------------------------------------------------
# unusual micrographs that are accepted: converted with a note, or warned about


def write_palette_png(path: Path) -> None:
    image = Image.fromarray(noise((16, 16)) // 64, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 255, 255, 255] + [0] * (256 - 4) * 3)
    image.save(path)


CONVERTED = {
    "rgb-tiff": ("rgb.tif", lambda p: tifffile.imwrite(p, noise((16, 16, 3)), photometric="rgb"), "rgb"),
    "rgba-png": ("rgba.png", lambda p: Image.fromarray(noise((16, 16, 4)), mode="RGBA").save(p), "rgba"),
    "palette-png": ("palette.png", write_palette_png, "palette"),
    "palette-tiff": (
        "palette.tif",
        lambda p: tifffile.imwrite(
            p, noise((16, 16)) // 64, photometric="palette", colormap=noise((3, 256), np.uint16)
        ),
        "palette",
    ),
}


@pytest.mark.parametrize("case", list(CONVERTED), ids=list(CONVERTED))
def test_colour_images_become_grey_with_a_note(tmp_path, caplog, case):
    name, make, conversion = CONVERTED[case]
    path = tmp_path / name
    make(path)
    with caplog.at_level(logging.INFO, logger="rformer_monai"):
        image = inference_transforms()({"image": str(path)})["image"]
    assert tuple(image.shape) == (1, 16, 16)
    assert image.meta["colour_conversion"] == conversion
    assert f"{path}: {conversion} image converted to one grey channel" in caplog.text


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64, np.float16])
def test_deep_and_float_images_are_normalised(tmp_path, dtype):
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, noise((24, 20), dtype))
    image = inference_transforms()({"image": str(path)})["image"]  # the bundle's min-max scaling
    assert tuple(image.shape) == (1, 24, 20) and image.dtype == torch.float32
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    zscored = inference_transforms(intensity="zscore")({"image": str(path)})["image"]
    assert torch.isfinite(zscored).all()
    assert abs(float(zscored.mean())) < 1e-3 and abs(float(zscored.std(unbiased=False)) - 1) < 1e-2


@pytest.mark.parametrize("value", [0, 255])
def test_constant_image_is_warned_about_and_gives_finite_values(tmp_path, caplog, value):
    path = tmp_path / "blank.tif"
    tifffile.imwrite(path, np.full((32, 32), value, np.uint8))
    with caplog.at_level(logging.WARNING):
        image = inference_transforms()({"image": str(path)})["image"]
    assert f"{path}: every pixel has the value {value} (a blank, constant image)" in caplog.text
    assert torch.equal(image, torch.zeros_like(image))


# ------------------------------------------------------------------------------------------
# masks


def pair(tmp_path: Path, mask: np.ndarray, image_shape: tuple[int, int] | None = None) -> dict[str, str]:
    image_path, mask_path = tmp_path / "a.tif", tmp_path / "a_mask.tif"
    tifffile.imwrite(image_path, noise(image_shape or mask.shape))
    tifffile.imwrite(mask_path, mask)
    return {"image": str(image_path), "label": str(mask_path)}


def test_mask_of_another_size(tmp_path):
    files = pair(tmp_path, np.zeros((40, 60), np.uint8), image_shape=(40, 50))
    with pytest.raises(Exception) as error:
        validation_transforms(crop_bottom=0)(files)
    mask_error = find_user_error(error.value)
    assert isinstance(mask_error, MaskShapeError)
    assert str(mask_error) == (
        f"{files['label']}: has shape (40, 60) but its image {files['image']} has shape (40, 50): "
        "a mask must have its image's height and width (or its width and the rows above the data bar)"
    )


def test_mask_with_grey_levels_is_binarised_at_half_range_with_a_warning(tmp_path, caplog):
    mask = np.array([[0, 100, 128, 255]] * 4, np.uint8)
    files = pair(tmp_path, mask)
    with caplog.at_level(logging.WARNING):
        label = validation_transforms(crop_bottom=0)(files)["label"]
    np.testing.assert_array_equal(label[0].numpy(), mask > 127.5)
    assert (
        f"{files['label']}: mask holds 4 grey levels between 0 and 255, not only 0 and 255: binarised at half "
        "range (particle where the value is above 127.5)"
    ) in caplog.text


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_mask_of_zeros_and_ones_is_read_as_labels(tmp_path, caplog, dtype):
    mask = np.zeros((8, 8), dtype)
    mask[2:5, 3:6] = 1
    with caplog.at_level(logging.WARNING):
        label = validation_transforms(crop_bottom=0)(pair(tmp_path, mask))["label"]
    np.testing.assert_array_equal(label[0].numpy(), mask)
    assert "mask" not in caplog.text  # nothing to warn about


def test_mask_without_particles_is_warned_about(tmp_path, caplog):
    files = pair(tmp_path, np.zeros((16, 16), np.uint8))
    with caplog.at_level(logging.WARNING):
        label = validation_transforms(crop_bottom=0)(files)["label"]
    assert not label.any()
    assert f"{files['label']}: mask has no particle pixels (every pixel is background)" in caplog.text


# ------------------------------------------------------------------------------------------
# dataset folders


def test_dataset_folder_problems(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{tmp_path / 'images'}: no images found")):
        discover_pairs(tmp_path)
    tifffile.imwrite(tmp_path / "images" / "a.tif", noise((8, 8)))
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{tmp_path / 'masks'}: mask folder missing")):
        discover_pairs(tmp_path)
    image = tmp_path / "images" / "a.tif"
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{image}: is a file, not a folder")):
        discover_pairs(image)
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{tmp_path / 'absent'}: no such folder")):
        inference_datalist(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{tmp_path / 'empty'}: no micrographs found")):
        inference_datalist(tmp_path / "empty")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for another user's 0700 folder
    unreadable = f"{tmp_path}: folder is not readable (check its permissions)"
    with pytest.raises(DatasetLayoutError, match=re.escape(unreadable)):
        discover_pairs(tmp_path)


# ------------------------------------------------------------------------------------------
# settings


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("max_epochs", "abc", "a positive integer"),
        ("max_epochs", 0, "a positive integer"),
        ("max_epochs", True, "a positive integer"),
        ("learning_rate", "1e-3x", "a positive number"),
        ("learning_rate", float("nan"), "a positive number"),
        ("lr_schedule", "step", "one of ('constant', 'cosine')"),
        ("roi_size", 256, "a list of two positive integers such as [256, 256]"),
        ("roi_size", [256, 0], "a list of two positive integers such as [256, 256]"),
        ("threshold", 1.0, "a number in (0, 1)"),
        ("particle_threshold", 0, "a number in (0, 1)"),
        ("particle_valley_gain", -1, "a number >= 0"),
        ("sw_overlap", "0.25", "a number in [0, 1)"),
        ("crop_bottom", "null", "None (detect the data bar) or an integer >= 0"),
        ("pixel_size_nm", -1.5, "None (read from the files) or a positive number"),
        ("intensity", "minmax", "one of ('zscore', 'unit', 'none')"),
        ("amp", "false", "True or False (capitalised on the command line)"),
        ("overwrite", "perhaps", "true or false"),
        ("tta", "sometimes", "None (no test-time augmentation), 'dihedral' or 'flips'"),
        ("num_workers", -1, "an integer >= 0"),
    ],
)
def test_check_settings_names_the_setting_and_what_it_expects(name, value, expected):
    with pytest.raises(SettingsError) as error:
        check_settings(**{name: value})
    assert str(error.value) == f"setting '{name}' must be {expected}, got {value!r} ({type(value).__name__})"


def test_check_settings_accepts_good_values_and_reports_all_problems():
    check_settings(
        max_epochs=200, learning_rate=1e-4, lr_schedule="cosine", roi_size=[256, 256], threshold=0.5, sw_overlap=0, crop_bottom=None,
        pixel_size_nm=7.3, intensity="zscore", amp=False, overwrite="true", save_probability=False, num_workers=0,
        seed=0, dataset_dir=None, output_dir="out", resume_from=None,
    )  # fmt: skip
    with pytest.raises(SettingsError, match="setting 'max_epochs' .*; setting 'threshold' "):
        check_settings(max_epochs="abc", threshold="abc")
    with pytest.raises(ValueError, match=r"check_settings has no rule for \['epochs'\]"):
        check_settings(epochs=3)


@pytest.mark.parametrize(
    "value, expected", [(True, True), ("true", True), ("False", False), ("no", False), (1, True), (0, False)]
)
def test_as_bool(value, expected):
    assert as_bool(value, "overwrite") is expected


# ------------------------------------------------------------------------------------------
# the terminal line and the log


def wrapped_error(inner: BaseException) -> RuntimeError:
    """An exception as MONAI's bundle CLI raises it: the user error wrapped twice."""
    try:
        try:
            raise inner
        except Exception as exc:
            raise RuntimeError("applying transform <LoadMicrographd>") from exc
    except RuntimeError as exc:
        try:
            raise RuntimeError("Failed to evaluate ConfigExpression: $@evaluator.run()") from exc
        except RuntimeError as outer:
            return outer


def test_reporter_prints_one_line_for_user_errors_and_logs_the_traceback(tmp_path, capsys):
    fallbacks: list[BaseException] = []
    reporter = ErrorReporter(tmp_path / "out" / "error.log", fallback=lambda t, e, tb: fallbacks.append(e))
    error = wrapped_error(MicrographReadError("/in/a.tif", "file is empty (0 bytes)"))
    reporter(type(error), error, error.__traceback__)
    log = tmp_path / "out" / "error.log"
    assert capsys.readouterr().err == f"error: /in/a.tif: file is empty (0 bytes) (traceback in {log})\n"
    logged = log.read_text()
    assert "Traceback (most recent call last)" in logged and "MicrographReadError" in logged
    assert "Failed to evaluate" in logged
    assert fallbacks == []

    failed = FailedInputsError("1 of 6 images failed, see out/failed.csv")
    reporter(FailedInputsError, failed, None)
    assert capsys.readouterr().err == "error: 1 of 6 images failed, see out/failed.csv\n"


def test_reporter_cuts_a_long_message_on_the_terminal_only(tmp_path, capsys):
    reporter = ErrorReporter(tmp_path / "error.log")
    error = CheckpointError("/m.pt: not a readable PyTorch checkpoint: " + "a library's paragraph " * 100)
    reporter(CheckpointError, error, None)
    line = capsys.readouterr().err
    assert line.startswith("error: /m.pt: not a readable") and " [...] (traceback in " in line and len(line) < 700
    assert str(error) in (tmp_path / "error.log").read_text()


def test_reporter_without_a_writable_log_still_prints_one_line(tmp_path, capsys):
    (tmp_path / "out").write_text("a file where the log folder should be")
    reporter = ErrorReporter(tmp_path / "out" / "error.log")
    reporter(DatasetLayoutError, DatasetLayoutError("/data: no such folder"), None)
    assert capsys.readouterr().err == "error: /data: no such folder\n"


def test_reporter_leaves_bugs_and_interrupts_to_python(tmp_path, capsys):
    fallbacks: list[BaseException] = []
    reporter = ErrorReporter(tmp_path / "error.log", fallback=lambda t, e, tb: fallbacks.append(e))
    bug = wrapped_error(ZeroDivisionError("division by zero"))
    reporter(type(bug), bug, bug.__traceback__)
    interrupt = KeyboardInterrupt()
    reporter(KeyboardInterrupt, interrupt, None)
    assert fallbacks == [bug, interrupt]
    assert capsys.readouterr().err == ""
    assert "ZeroDivisionError" in (tmp_path / "error.log").read_text()
    assert describe_error(bug) == "ZeroDivisionError: division by zero"


def test_user_error_found_through_the_context_chain():
    try:
        try:
            raise CheckpointError("/m.pt: checkpoint not found")
        except CheckpointError:
            raise RuntimeError("while handling it, another error")  # noqa: B904 (implicit __context__)
    except RuntimeError as exc:
        assert isinstance(find_user_error(exc), CheckpointError)
    assert find_user_error(ValueError("a plain ValueError is not a user error")) is None


def test_installing_twice_keeps_python_hook_as_fallback(tmp_path):
    first = install_error_reporting(tmp_path / "a")
    second = install_error_reporting(tmp_path / "b")
    assert (first, second) == (tmp_path / "a" / "error.log", tmp_path / "b" / "error.log")
    assert isinstance(sys.excepthook, ErrorReporter) and not isinstance(sys.excepthook.fallback, ErrorReporter)


# ------------------------------------------------------------------------------------------
# through the bundle: checkpoints and settings end the run with one line


def inference_error(tmp_path: Path, **overrides) -> BaseException:
    (tmp_path / "in").mkdir(exist_ok=True)
    tifffile.imwrite(tmp_path / "in" / "a.tif", noise((32, 32)))
    settings = {
        "bundle_root": str(tmp_path / "bundle"),
        "dataset_dir": str(tmp_path / "in"),
        "output_dir": str(tmp_path / "out"),
        **TINY_NETWORK,
        **TINY_RUN,
        **overrides,
    }
    workflow = ConfigWorkflow(config_file=str(INFERENCE), workflow_type="infer", logging_file=None, **settings)
    with pytest.raises(RuntimeError) as error:
        workflow.initialize()
        workflow.run()
    return error.value


def terminal_line(error: BaseException, capsys) -> str:
    """What the hook that the config installed prints for ``error`` reaching the top of the program."""
    sys.excepthook(type(error), error, error.__traceback__)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


class RunsCode:
    """Pickles as a call (``os.getpid()``, harmless), as a malicious checkpoint's code would."""

    def __reduce__(self):
        return (os.getpid, ())


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"PK\x03\x04 not really a zip", "not a readable PyTorch checkpoint (corrupt or truncated?)"),
        (None, "weights do not fit ResidualFormer (missing"),
        ("runs-code", "refused as unsafe: it holds Python objects that would run code when loaded"),
    ],
    ids=["corrupt", "another-architecture", "runs-code"],
)
def test_bad_checkpoint_ends_inference_with_one_line(tmp_path, capsys, content, problem):
    checkpoint = tmp_path / "bundle" / "models" / "model.pt"
    checkpoint.parent.mkdir(parents=True)
    if content is None:
        torch.save(torch.nn.Conv2d(1, 1, 3).state_dict(), checkpoint)
    elif content == "runs-code":
        torch.save({"weight": RunsCode()}, checkpoint)
    else:
        checkpoint.write_bytes(content)
    error = inference_error(tmp_path)
    assert isinstance(find_user_error(error), CheckpointError)
    line = terminal_line(error, capsys)
    assert line.startswith(f"error: {checkpoint}: {problem}")
    assert line.endswith(f"(traceback in {tmp_path / 'out' / 'error.log'})")
    assert "CheckpointError" in (tmp_path / "out" / "error.log").read_text()


def test_wrong_setting_ends_inference_with_one_line(tmp_path, capsys):
    error = inference_error(tmp_path, threshold="abc")
    line = terminal_line(error, capsys)
    assert line.startswith("error: setting 'threshold' must be a number in (0, 1), got 'abc' (str)")


def test_wrong_setting_ends_training_with_one_line(tmp_path, capsys):
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in train_config_files(tmp_path)],
        workflow_type="train",
        logging_file=None,
        bundle_root=str(tmp_path / "bundle"),
        max_epochs="abc",
        **TINY_NETWORK,
    )
    with pytest.raises(RuntimeError) as error:
        workflow.initialize()
    assert terminal_line(error.value, capsys) == (
        "error: setting 'max_epochs' must be a positive integer, got 'abc' (str) "
        f"(traceback in {tmp_path / 'bundle' / 'runs' / 'error.log'})"
    )


def test_resuming_from_a_bare_model_file_or_another_network(tmp_path):
    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    bare = tmp_path / "model.pt"
    torch.save(network.state_dict(), bare)
    not_training = f"{bare}: not a training checkpoint (it holds no model, optimizer, trainer)"
    with pytest.raises(CheckpointError, match=re.escape(not_training)):
        ResumeFromCheckpoint(str(bare), {"model": network, "optimizer": optimizer})
    other = tmp_path / "checkpoint_epoch=1.pt"
    torch.save({"model": torch.nn.Linear(3, 1).state_dict(), "optimizer": {}, "trainer": {}}, other)
    with pytest.raises(CheckpointError, match=re.escape(f"{other}: weights do not fit Linear (tensor shapes differ)")):
        ResumeFromCheckpoint(str(other), {"model": network, "optimizer": optimizer})
