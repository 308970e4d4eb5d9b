"""Packing a bundle into one zip with its SHA-256, and fetching one safely.

``pack_bundle`` writes ``<name>_v<version>.zip`` holding the bundle under one top folder ``<name>/`` (the layout
``python -m monai.bundle download --url`` extracts) and ``<name>_v<version>.zip.sha256`` beside it, in
``sha256sum`` format. Run outputs, caches and temporary files stay out; entries are sorted and time-stamped
alike, so the same bundle always packs to the same bytes and the same checksum.

``fetch_bundle`` downloads such a zip, checks its SHA-256 before anything is extracted, refuses entries that
would land outside the target folder, and extracts into a temporary folder that is renamed into place only
once everything is written: a failure leaves nothing behind.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rformer_monai.sharing.metadata import check_metadata
from rformer_monai.workflows.checkpoints import BEST_MODEL_FILENAME

logger = logging.getLogger(__name__)

EXCLUDED_FOLDERS = ("runs", "eval", "data")
"""Top-level bundle folders that hold run outputs or datasets, never shipped."""
EXCLUDED_NAMES = (
    "__pycache__",
    ".ipynb_checkpoints",
    ".pytest_cache",
    ".mypy_cache",
    ".git",
    ".DS_Store",
    "*.pyc",
    "*.pyo",
    "*.tmp",
    "*.temp",
    "*.swp",
    "*~",
    ".*.tmp",
    "Thumbs.db",
)
"""File or folder name patterns left out at any depth: caches, editor and temporary files."""
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
"""The earliest time a zip can hold: every entry gets it, so packing is reproducible."""
FILE_MODE = 0o644
CHUNK_BYTES = 1 << 20
SHA256_SUFFIX = ".sha256"
WEIGHTS_PATH = PurePosixPath("models", BEST_MODEL_FILENAME)
METADATA_PATH = PurePosixPath("configs", "metadata.json")


class UnsafeArchiveError(ValueError):
    """A zip entry would be written outside the target folder, or is a link; the message names it."""


@dataclass(frozen=True)
class PackedBundle:
    """What :func:`pack_bundle` wrote."""

    archive: Path
    checksum_file: Path
    sha256: str
    files: tuple[str, ...]


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_excluded(relative: PurePosixPath) -> bool:
    if relative.parts and relative.parts[0] in EXCLUDED_FOLDERS:
        return True
    return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in EXCLUDED_NAMES)


def bundle_files(bundle_dir: str | os.PathLike) -> Iterator[PurePosixPath]:
    """The files of a bundle that belong in its package, relative to the bundle folder, sorted.

    Left out: the top-level ``runs/``, ``eval/`` and ``data/`` folders, caches, temporary files (see
    ``EXCLUDED_FOLDERS`` and ``EXCLUDED_NAMES``) and symbolic links (logged).
    """
    root = Path(bundle_dir)
    for current, folders, files in os.walk(root):
        folders.sort()
        current_path = Path(current)
        for folder in list(folders):
            relative = PurePosixPath((current_path / folder).relative_to(root).as_posix())
            if _is_excluded(relative) or (current_path / folder).is_symlink():
                folders.remove(folder)
        for name in sorted(files):
            path = current_path / name
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if _is_excluded(relative):
                continue
            if path.is_symlink():
                logger.warning("%s: symbolic link left out of the package", path)
                continue
            yield relative


def pack_bundle(
    bundle_dir: str | os.PathLike, output_dir: str | os.PathLike, name: str | None = None
) -> PackedBundle:
    """Pack a bundle folder into ``<output_dir>/<name>_v<version>.zip`` and write its ``.sha256`` beside it.

    Args:
        bundle_dir: the bundle folder (holding ``configs/metadata.json``).
        output_dir: folder of the zip and checksum (created when missing).
        name: the bundle's name, which is the zip's top folder and the ``--name`` of
            ``monai.bundle download``; default the bundle folder's name.

    Raises:
        ValueError: when the metadata is missing or does not meet the bundle specification (its ``version``
            names the zip), or ``output_dir`` lies inside the bundle (earlier packages would be packed too).
    """
    bundle_dir = Path(bundle_dir)
    output_dir = Path(output_dir)
    if output_dir.resolve() == bundle_dir.resolve() or bundle_dir.resolve() in output_dir.resolve().parents:
        raise ValueError(f"output {output_dir} is inside the bundle {bundle_dir}: pack into a folder outside it.")
    metadata = check_metadata(bundle_dir / METADATA_PATH)
    name = name or bundle_dir.resolve().name
    files = tuple(str(relative) for relative in bundle_files(bundle_dir))
    if str(WEIGHTS_PATH) not in files:
        logger.warning("%s: no %s; the package holds configs only (train it before sharing)", bundle_dir, WEIGHTS_PATH)
    output_dir.mkdir(parents=True, exist_ok=True)
    archive = output_dir / f"{name}_v{metadata['version']}.zip"
    handle, temporary = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".tmp", dir=output_dir)
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as package:
            for relative in files:
                entry = zipfile.ZipInfo(f"{name}/{relative}", date_time=ZIP_TIMESTAMP)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = (stat.S_IFREG | FILE_MODE) << 16
                package.writestr(entry, (bundle_dir / relative).read_bytes())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, archive)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    digest = sha256_of(archive)
    checksum_file = archive.with_name(archive.name + SHA256_SUFFIX)
    checksum_file.write_text(f"{digest}  {archive.name}\n")
    logger.info("packed %d files of %s into %s (sha256 %s)", len(files), bundle_dir, archive, digest)
    return PackedBundle(archive, checksum_file, digest, files)


def read_checksum_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest in a ``sha256sum``-format file (``<digest>  <file name>``)."""
    path = Path(path)
    fields = path.read_text().split()
    if not fields or len(fields[0]) != hashlib.sha256().digest_size * 2:
        raise ValueError(f"{path}: not a sha256sum file (expected '<64 hex digits>  <file name>').")
    return fields[0].lower()


def _checked_members(archive: zipfile.ZipFile, target: Path) -> list[tuple[zipfile.ZipInfo, Path]]:
    root = target.resolve()
    members = []
    for member in archive.infolist():
        name = member.filename
        mode = member.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"zip entry {name!r} is a symbolic link: refused.")
        pure = PurePosixPath(name.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
            raise UnsafeArchiveError(f"zip entry {name!r} would be written outside {target}: refused.")
        destination = (root / pure).resolve()
        if destination != root and root not in destination.parents:
            raise UnsafeArchiveError(f"zip entry {name!r} would be written outside {target}: refused.")
        members.append((member, destination))
    return members


def safe_extract(zip_path: str | os.PathLike, target_dir: str | os.PathLike) -> list[Path]:
    """Extract a zip into ``target_dir`` after checking every entry first.

    No entry may be absolute, contain ``..``, resolve outside ``target_dir`` or be a symbolic link; when one
    does, nothing at all is written. Returns the extracted files.

    Raises:
        UnsafeArchiveError: naming the first offending entry.
        zipfile.BadZipFile: when the file is not a zip.
    """
    target = Path(target_dir)
    with zipfile.ZipFile(zip_path) as archive:
        members = _checked_members(archive, target)
        written = []
        for member, destination in members:
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK_BYTES)
            written.append(destination)
    return written


def _top_folder(zip_path: Path) -> str:
    with zipfile.ZipFile(zip_path) as archive:
        tops = {PurePosixPath(name).parts[0] for name in archive.namelist() if PurePosixPath(name).parts}
    if len(tops) != 1:
        raise ValueError(
            f"{zip_path}: a bundle zip holds one top folder named after the bundle, found {sorted(tops) or 'none'}."
        )
    return tops.pop()


def fetch_bundle(
    url: str,
    bundle_dir: str | os.PathLike,
    sha256: str | None = None,
    name: str | None = None,
    progress: bool = True,
) -> Path:
    """Download a packed bundle, verify it, and extract it to ``<bundle_dir>/<name>``.

    Args:
        url: where the zip is (``https://``, ``http://`` or ``file://``).
        bundle_dir: the folder bundles are kept in.
        sha256: the zip's expected SHA-256 (its ``.sha256`` file, obtained from a source you trust); None
            skips the check with a warning.
        name: the bundle's folder name; default the zip's top folder.
        progress: show a download progress bar.

    Returns:
        The extracted bundle folder.

    Raises:
        monai.apps.utils.HashCheckError: when the download does not match ``sha256`` (nothing is kept).
        UnsafeArchiveError: when an entry would land outside the bundle folder (nothing is extracted).
        FileExistsError: when ``<bundle_dir>/<name>`` already exists.
    """
    from monai.apps.utils import download_url

    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    if sha256 is None:
        logger.warning("no SHA-256 given for %s: the download's integrity is not checked", url)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=bundle_dir) as workspace:
        zip_path = Path(workspace) / "bundle.zip"
        download_url(url=url, filepath=zip_path, hash_val=sha256.lower() if sha256 else None, progress=progress)
        folder = _top_folder(zip_path)
        destination = bundle_dir / (name or folder)
        if destination.exists():
            raise FileExistsError(f"{destination} already exists: remove it or fetch into another --bundle_dir.")
        staging = Path(workspace) / "extracted"
        safe_extract(zip_path, staging)
        check_metadata(staging / folder / METADATA_PATH)
        os.replace(staging / folder, destination)
    logger.info("fetched %s into %s", url, destination)
    return destination
