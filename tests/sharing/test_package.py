"""Packing the bundle, downloading it from a local HTTP server with MONAI's and our own command, and running it
from there; checksums and path-traversal archives are refused without leaving files behind."""

from __future__ import annotations

import functools
import http.server
import json
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import monai.apps.utils
import numpy as np
import pytest
import tifffile
from monai.apps.utils import HashCheckError, extractall
from monai.bundle import download
from sharing_helpers import run_inference, write_micrograph
from tiny_bundle_network import BUNDLE

from rformer_monai.files import sha256_of
from rformer_monai.sharing import (
    UnsafeArchiveError,
    fetch_bundle,
    pack_bundle,
    package,
    safe_extract,
)
from rformer_monai.sharing.__main__ import main

NAME = "residualformer_sem"
ARCHIVE = f"{NAME}_v{json.loads((BUNDLE / 'configs' / 'metadata.json').read_text())['version']}.zip"
LEFT_OUT = (
    "runs/checkpoints/checkpoint_final.pt",
    "eval/metrics.json",
    "data/images/a.tif",
    "configs/__pycache__/x.cpython-312.pyc",
    "models/.model.pt.12ab.tmp",
    "docs/notes.md~",
    "configs/.train.json.swp",
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def serve() -> Iterator:
    """``serve(folder)``: serve ``folder`` on 127.0.0.1 from a thread and return its base URL."""
    servers = []

    def _serve(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=folder))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _add_clutter(bundle: Path) -> None:
    for relative in LEFT_OUT:
        (bundle / relative).parent.mkdir(parents=True, exist_ok=True)
        (bundle / relative).write_bytes(b"not for sharing")


def _files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def test_pack_command_writes_versioned_zip_and_checksum_without_run_outputs(tiny_bundle, tmp_path, capsys):
    _add_clutter(tiny_bundle)
    assert main(["pack", "--bundle", str(tiny_bundle), "--output", str(tmp_path / "dist")]) == 0
    archive = tmp_path / "dist" / ARCHIVE
    assert str(archive) in capsys.readouterr().out
    digest, file_name = (tmp_path / "dist" / f"{ARCHIVE}.sha256").read_text().split()
    assert (digest, file_name) == (sha256_of(archive), ARCHIVE)

    names = set(zipfile.ZipFile(archive).namelist())
    assert all(name.startswith(f"{NAME}/") for name in names)
    for shipped in ("configs/metadata.json", "configs/inference.json", "configs/inference_onnx.json",
                    "configs/multi_gpu_train.json", "configs/train.json", "models/model.pt"):  # fmt: skip
        assert f"{NAME}/{shipped}" in names
    for relative in LEFT_OUT:
        assert f"{NAME}/{relative}" not in names
    assert not any("__pycache__" in name or name.endswith(".tmp") for name in names)


def test_packing_is_reproducible(tiny_bundle, tmp_path):
    first = pack_bundle(tiny_bundle, tmp_path / "first")
    (tiny_bundle / "configs" / "train.json").touch()  # a newer time stamp, the same bytes
    second = pack_bundle(tiny_bundle, tmp_path / "second")
    assert first.sha256 == second.sha256


def test_pack_refuses_metadata_that_misses_the_specification(tiny_bundle, tmp_path):
    (tiny_bundle / "configs" / "metadata.json").write_text('{"version": "0.1.0"}')
    with pytest.raises(ValueError, match=r"metadata.json does not meet the MONAI bundle specification.*'task'"):
        pack_bundle(tiny_bundle, tmp_path / "dist")
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())


def test_pack_refuses_an_output_folder_inside_the_bundle(tiny_bundle):
    with pytest.raises(ValueError, match="inside the bundle"):
        pack_bundle(tiny_bundle, tiny_bundle / "dist")


@pytest.mark.slow
def test_monai_download_of_the_packed_bundle_runs_inference_elsewhere(tiny_bundle, tmp_path, serve):
    packed = pack_bundle(tiny_bundle, tmp_path / "dist")
    url = f"{serve(tmp_path / 'dist')}/{packed.archive.name}"
    colleague = tmp_path / "colleague"  # a fresh folder: nothing of the original bundle is in reach
    colleague.mkdir()

    with pytest.warns(UserWarning, match="integrity is NOT verified"):  # MONAI's --url download takes no checksum
        download(name=NAME, url=url, bundle_dir=str(colleague), progress=False)

    downloaded = colleague / NAME
    assert _files_under(downloaded) == set(packed.files)
    inputs = tmp_path / "micrographs"
    write_micrograph(inputs, "grains", size=(96, 120))
    run_inference(downloaded, inputs, colleague / "masks")
    run_inference(tiny_bundle, inputs, tmp_path / "reference_masks")
    mask = tifffile.imread(colleague / "masks" / "grains_mask.tif")
    assert mask.shape == (96, 120) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask, tifffile.imread(tmp_path / "reference_masks" / "grains_mask.tif"))


def test_fetch_command_verifies_the_checksum_and_extracts(tiny_bundle, tmp_path, serve):
    packed = pack_bundle(tiny_bundle, tmp_path / "dist")
    url = f"{serve(tmp_path / 'dist')}/{packed.archive.name}"
    arguments = ["fetch", "--url", url, "--sha256_file", str(packed.checksum_file), "--bundle_dir", str(tmp_path / "b")]
    assert main(arguments) == 0
    assert _files_under(tmp_path / "b" / NAME) == set(packed.files)
    assert sorted(path.name for path in (tmp_path / "b").iterdir()) == [NAME]  # no zip or temporary left
    with pytest.raises(FileExistsError, match="already exists"):
        fetch_bundle(url, tmp_path / "b", sha256=packed.sha256, progress=False)


def test_a_wrong_checksum_stops_the_fetch_and_leaves_nothing(tiny_bundle, tmp_path, serve):
    packed = pack_bundle(tiny_bundle, tmp_path / "dist")
    url = f"{serve(tmp_path / 'dist')}/{packed.archive.name}"
    with pytest.raises(HashCheckError, match="hash check of downloaded file failed"):
        fetch_bundle(url, tmp_path / "bundles", sha256="0" * 64, progress=False)
    assert list((tmp_path / "bundles").iterdir()) == []


def _traversal_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{NAME}/configs/metadata.json", "{}")  # a harmless entry first
        archive.writestr(f"{NAME}/../../escaped.txt", "outside the target folder")
    return path


def test_monai_extractall_refuses_a_traversal_entry(tmp_path):
    archive = _traversal_zip(tmp_path / f"{NAME}.zip")
    with pytest.raises(ValueError, match="Unsafe path"):
        extractall(archive, tmp_path / "target" / "inner", has_base=True)
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "target" / "escaped.txt").exists()


def _symlink_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name)
    entry.external_attr = (stat.S_IFLNK | 0o777) << 16
    return entry


@pytest.mark.parametrize(
    "entry, message",
    [
        (f"{NAME}/../../escaped.txt", "outside"),
        ("/tmp/escaped.txt", "outside"),
        ("..\\escaped.txt", "outside"),
        (_symlink_entry(f"{NAME}/models/model.pt"), "symbolic link"),
    ],
)
def test_safe_extract_refuses_entries_outside_the_target_and_writes_nothing(tmp_path, entry, message):
    archive_path = tmp_path / "crafted.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr(f"{NAME}/configs/metadata.json", "{}")
        archive.writestr(entry, "/etc/passwd" if isinstance(entry, zipfile.ZipInfo) else "outside")
    target = tmp_path / "deep" / "target"
    target.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive_path, target)
    assert _files_under(tmp_path / "deep") == set()
    assert not (tmp_path / "escaped.txt").exists()


def test_fetch_refuses_a_traversal_zip_and_leaves_nothing(tmp_path, serve):
    (tmp_path / "dist").mkdir()
    archive = _traversal_zip(tmp_path / "dist" / "evil.zip")
    url = f"{serve(tmp_path / 'dist')}/{archive.name}"
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        fetch_bundle(url, tmp_path / "bundles", sha256=sha256_of(archive), progress=False)
    assert list((tmp_path / "bundles").iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_fetch_takes_a_file_url_as_the_documented_publishing_step_does(tiny_bundle, tmp_path):
    packed = pack_bundle(tiny_bundle, tmp_path / "dist")
    fetched = fetch_bundle(packed.archive.as_uri(), tmp_path / "publish", sha256=packed.sha256, progress=False)
    assert fetched == tmp_path / "publish" / NAME
    assert _files_under(fetched) == set(packed.files)


# ------------------------------------------------------------------------------------------
# fetch: arguments checked before the download, one line on the terminal, archives bounded


def _no_download(*args, **kwargs):
    raise AssertionError("the download started")


def _error_line(capsys) -> str:
    """The one error line on stderr (a download's progress bar may come before it), with no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("digest", ["abc", "g" * 64, "0" * 63])
def test_fetch_refuses_a_malformed_sha256_before_downloading(tmp_path, monkeypatch, capsys, digest):
    monkeypatch.setattr(monai.apps.utils, "download_url", _no_download)
    arguments = ["fetch", "--url", "http://127.0.0.1:1/b.zip", "--sha256", digest, "--bundle_dir", str(tmp_path)]
    assert main(arguments) == 1
    assert _error_line(capsys) == (
        f"error: --sha256 must be a SHA-256 digest of 64 hex digits (as sha256sum prints it), got '{digest}'"
    )


def test_fetch_finds_an_existing_target_before_downloading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(monai.apps.utils, "download_url", _no_download)
    (tmp_path / "bundles" / NAME).mkdir(parents=True)
    # the name from --name, or from the package's file name <name>_v<version>.zip
    for extra, url in (([], f"http://127.0.0.1:1/{ARCHIVE}"), (["--name", NAME], "http://127.0.0.1:1/latest.zip")):
        arguments = ["fetch", "--url", url, "--sha256", "0" * 64, "--bundle_dir", str(tmp_path / "bundles"), *extra]
        assert main(arguments) == 1
        assert _error_line(capsys) == (
            f"error: {tmp_path / 'bundles' / NAME} already exists: remove it or fetch into another --bundle_dir."
        )


def test_fetch_errors_are_one_line(tiny_bundle, tmp_path, serve, capsys):
    packed = pack_bundle(tiny_bundle, tmp_path / "dist")
    (tmp_path / "dist" / "notes.zip").write_text("not a zip")
    base = serve(tmp_path / "dist")
    bundles = str(tmp_path / "bundles")
    cases = {
        f"{base}/missing.zip": "download failed (HTTP Error 404",
        f"{base}/notes.zip": "the download is not a zip file",
        "http://127.0.0.1:1/b.zip": "download failed (<urlopen error [Errno 111] Connection refused>)",
    }
    for url, problem in cases.items():
        assert main(["fetch", "--url", url, "--bundle_dir", bundles]) == 1
        assert _error_line(capsys).startswith(f"error: {url}: {problem}")
    url = f"{base}/{packed.archive.name}"
    assert main(["fetch", "--url", url, "--sha256", "0" * 64, "--bundle_dir", bundles]) == 1
    assert "hash check of downloaded file failed" in _error_line(capsys)
    assert main(["fetch", "--url", url, "--sha256_file", str(tmp_path / "absent.sha256"), "--bundle_dir", bundles]) == 1
    assert "absent.sha256: checksum file cannot be read" in _error_line(capsys)
    assert [path.name for path in (tmp_path / "bundles").iterdir()] == []


def _zip_of_zeros(path: Path, members: int, member_bytes: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{NAME}/configs/metadata.json", "{}")
        for index in range(members):
            archive.writestr(f"{NAME}/models/part_{index}.bin", bytes(member_bytes))
    return path


@pytest.mark.parametrize(
    "members, member_bytes, limits",
    [(2, 3 << 20, {"max_bytes": 4 << 20}), (20, 10, {"max_members": 10})],
    ids=["too-many-bytes", "too-many-files"],
)
def test_safe_extract_refuses_a_zip_bomb_and_writes_nothing(tmp_path, members, member_bytes, limits):
    archive = _zip_of_zeros(tmp_path / "bomb.zip", members, member_bytes)
    assert archive.stat().st_size < 100_000  # megabytes of zeros compress to kilobytes
    with pytest.raises(UnsafeArchiveError, match=r"bomb.zip: would extract \d+ bytes in \d+ files, more than the"):
        safe_extract(archive, tmp_path / "target", **limits)
    assert not (tmp_path / "target").exists()


def test_fetch_refuses_a_zip_bomb_with_one_line_and_leaves_nothing(tmp_path, serve, monkeypatch, capsys):
    (tmp_path / "dist").mkdir()
    archive = _zip_of_zeros(tmp_path / "dist" / "bomb.zip", 3, 1 << 20)
    monkeypatch.setattr(package, "MAX_EXTRACTED_BYTES", 2 << 20)
    url = f"{serve(tmp_path / 'dist')}/bomb.zip"
    arguments = ["fetch", "--url", url, "--sha256", sha256_of(archive), "--bundle_dir", str(tmp_path / "bundles")]
    assert main(arguments) == 1
    assert "(a zip bomb?): refused." in _error_line(capsys)
    assert list((tmp_path / "bundles").iterdir()) == []
    assert package.MAX_EXTRACTED_BYTES == 2 << 20 and package.MAX_ARCHIVE_MEMBERS == 10_000
