"""Packing a bundle into one zip with its SHA-256, and fetching one safely.

``pack_bundle`` writes ``<name>_v<version>.zip`` holding the bundle under one top folder ``<name>/`` (the layout
``python -m monai.bundle download --url`` extracts) and ``<name>_v<version>.zip.sha256`` beside it, in
``sha256sum`` format. Run outputs, caches and temporary files stay out; entries are sorted and time-stamped
alike, so the same bundle always packs to the same bytes and the same checksum.

``fetch_bundle`` checks its arguments (a SHA-256 of 64 hex digits, a target folder that does not exist yet) before
anything is downloaded, downloads the zip, checks its SHA-256 before anything is extracted, refuses entries that
would land outside the target folder and archives that would extract more than ``MAX_EXTRACTED_BYTES`` or
``MAX_ARCHIVE_MEMBERS`` files (a zip bomb), and extracts into a temporary folder that is renamed into place only
once everything is written: a failure leaves nothing behind.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rformer_monai.files import sha256_of
from rformer_monai.sharing.metadata import check_metadata
from rformer_monai.workflows.checkpoints import BEST_MODEL_FILENAME
from rformer_monai.workflows.errors import one_line

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


MAX_EXTRACTED_BYTES = 2 * 1024**3
"""The most bytes a bundle zip may extract to (the shipped bundle, weights and exports included, is far below)."""
MAX_ARCHIVE_MEMBERS = 10_000
"""The most entries a bundle zip may hold."""
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
PACKED_NAME = re.compile(r"(?P<name>.+)_v[^_/]+\.zip")
"""The file name :func:`pack_bundle` gives a package: ``<name>_v<version>.zip``."""


class UnsafeArchiveError(ValueError):
    """A zip entry would be written outside the target folder, or is a link, or the archive would extract more
    than the limits allow; the message names it."""


class FetchError(ValueError):
    """A bundle cannot be fetched: a malformed argument, a failed download, a file that is not a zip; the
    message names the argument, address or file."""


@dataclass(frozen=True)
class PackedBundle:
    """What :func:`pack_bundle` wrote."""

    archive: Path
    checksum_file: Path
    sha256: str
    files: tuple[str, ...]


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


def check_sha256(digest: str, name: str = "sha256") -> str:
    """``digest`` in lower case if it is a SHA-256 hex digest (64 hex digits).

    Raises:
        FetchError: naming ``name`` and the value received.
    """
    if not isinstance(digest, str) or SHA256_HEX.fullmatch(digest.strip()) is None:
        raise FetchError(
            f"{name} must be a SHA-256 digest of 64 hex digits (as sha256sum prints it), got {digest!r}"
        )
    return digest.strip().lower()


def read_checksum_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest in a ``sha256sum``-format file (``<digest>  <file name>``)."""
    path = Path(path)
    try:
        fields = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise FetchError(f"{path}: checksum file cannot be read ({exc})") from exc
    if not fields or SHA256_HEX.fullmatch(fields[0]) is None:
        raise FetchError(f"{path}: not a sha256sum file (expected '<64 hex digits>  <file name>').")
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


def _too_large(zip_path: str | os.PathLike, size: str, max_bytes: int, max_members: int) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{zip_path}: would extract {size}, more than the limits of {max_bytes} bytes and {max_members} files "
        "(a zip bomb?): refused."
    )


def _check_totals(archive: zipfile.ZipFile, zip_path: str | os.PathLike, max_bytes: int, max_members: int) -> None:
    members = archive.infolist()
    total = sum(member.file_size for member in members)
    if len(members) > max_members or total > max_bytes:
        raise _too_large(zip_path, f"{total} bytes in {len(members)} files", max_bytes, max_members)


def safe_extract(
    zip_path: str | os.PathLike,
    target_dir: str | os.PathLike,
    max_bytes: int | None = None,
    max_members: int | None = None,
) -> list[Path]:
    """Extract a zip into ``target_dir`` after checking every entry first.

    No entry may be absolute, contain ``..``, resolve outside ``target_dir`` or be a symbolic link, and the
    archive may not hold more than ``max_members`` entries or extract to more than ``max_bytes`` (as its
    directory states them; the bytes actually written are counted too); when one of these fails before
    extraction, nothing at all is written. Returns the extracted files.

    Args:
        zip_path: the archive.
        target_dir: where it is extracted.
        max_bytes: default ``MAX_EXTRACTED_BYTES``.
        max_members: default ``MAX_ARCHIVE_MEMBERS``.

    Raises:
        UnsafeArchiveError: naming the first offending entry, or the sizes over the limits.
        zipfile.BadZipFile: when the file is not a zip.
    """
    max_bytes = MAX_EXTRACTED_BYTES if max_bytes is None else max_bytes
    max_members = MAX_ARCHIVE_MEMBERS if max_members is None else max_members
    target = Path(target_dir)
    with zipfile.ZipFile(zip_path) as archive:
        _check_totals(archive, zip_path, max_bytes, max_members)
        members = _checked_members(archive, target)
        written, extracted = [], 0
        for member, destination in members:
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as sink:
                while chunk := source.read(CHUNK_BYTES):
                    extracted += len(chunk)
                    if extracted > max_bytes:
                        raise _too_large(zip_path, f"more than {extracted} bytes", max_bytes, max_members)
                    sink.write(chunk)
            written.append(destination)
    return written


def _top_folder(zip_path: Path, url: str = "") -> str:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            tops = {PurePosixPath(name).parts[0] for name in archive.namelist() if PurePosixPath(name).parts}
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{url or zip_path}: the download is not a zip file ({exc})") from exc
    if len(tops) != 1:
        raise ValueError(
            f"{zip_path}: a bundle zip holds one top folder named after the bundle, found {sorted(tops) or 'none'}."
        )
    return tops.pop()


def _packed_name(url: str) -> str | None:
    """The bundle name in a URL ending in ``<name>_v<version>.zip`` (how :func:`pack_bundle` names a package)."""
    match = PACKED_NAME.fullmatch(PurePosixPath(url.split("?", 1)[0].split("#", 1)[0]).name)
    return match.group("name") if match else None


def _require_absent(destination: Path) -> None:
    if destination.exists() or destination.is_symlink():
        raise FileExistsError(f"{destination} already exists: remove it or fetch into another --bundle_dir.")


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
        FetchError: ``sha256`` is not 64 hex digits, ``bundle_dir`` is a file, the download fails or is not a
            zip (the first two before anything is downloaded).
        monai.apps.utils.HashCheckError: when the download does not match ``sha256`` (nothing is kept).
        UnsafeArchiveError: when an entry would land outside the bundle folder, or the archive would extract
            more than ``MAX_EXTRACTED_BYTES`` or ``MAX_ARCHIVE_MEMBERS`` files (nothing is extracted).
        FileExistsError: when ``<bundle_dir>/<name>`` already exists: found before the download where the name
            is known (``name``, or a URL ending in ``<name>_v<version>.zip`` as :func:`pack_bundle` names it).
    """
    from monai.apps.utils import HashCheckError, download_url

    if sha256 is not None:
        sha256 = check_sha256(sha256, "--sha256")
    bundle_dir = Path(bundle_dir)
    if bundle_dir.exists() and not bundle_dir.is_dir():
        raise FetchError(f"{bundle_dir}: --bundle_dir is a file, not a folder")
    expected = name or _packed_name(url)
    if expected is not None:
        _require_absent(bundle_dir / expected)
    try:
        bundle_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"{bundle_dir}: --bundle_dir cannot be created ({exc.strerror or exc})") from exc
    if sha256 is None:
        logger.warning("no SHA-256 given for %s: the download's integrity is not checked", url)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=bundle_dir) as workspace:
        zip_path = Path(workspace) / "bundle.zip"
        try:
            download_url(url=url, filepath=zip_path, hash_val=sha256, progress=progress)
        except HashCheckError:
            raise
        except (OSError, RuntimeError, ValueError) as exc:  # URLError, HTTPError, a refused connection, ...
            raise FetchError(f"{url}: download failed ({one_line(str(exc))})") from exc
        folder = _top_folder(zip_path, url)
        destination = bundle_dir / (name or folder)
        _require_absent(destination)
        staging = Path(workspace) / "extracted"
        safe_extract(zip_path, staging)
        check_metadata(staging / folder / METADATA_PATH)
        os.replace(staging / folder, destination)
    logger.info("fetched %s into %s", url, destination)
    return destination
