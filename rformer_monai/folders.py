"""The output folder of a run: checked before any work, and claimed by one run at a time.

- :func:`require_writable_folder` creates the folder and writes a probe file into it, so that an output folder
  that is a regular file, cannot be created or cannot be written ends the run with one line naming it before
  the network is loaded or an image is read (a permission check alone says nothing for root, or on read-only
  mounts).
- :func:`claim_output_folder` also takes an exclusive lock (``flock``) on the folder itself. Batch inference
  removes the temporary files that a killed run left beside the outputs it still has to write
  (:func:`~rformer_monai.workflows.pending_items`); with the lock, no other run can be writing them at that
  moment, and a second run started on the same folder ends at once with an error naming the folder. The
  run-level files (``failed.csv``, ``summary.csv``) are rewritten by each run anyway, so two runs in one folder
  at once could not give one coherent result. The kernel releases the lock when its process ends, even when
  killed, so a crashed run never blocks the next one, and no lock file is left in the folder.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

PROBE_PREFIX = ".write-test-"
# file systems without locks (some network mounts) answer with one of these: the run goes on, unlocked
_LOCKS_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF)

_held_locks: dict[Path, int] = {}
"""Output folders this process has claimed -> the descriptor holding the lock (kept open until the process ends:
a second claim from the same process, such as a rerun in a notebook, reuses it)."""


class OutputFolderError(ValueError):
    """The output folder is a file, cannot be created or written, or another run is writing into it; the
    message names the folder."""


def require_writable_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a ``Path``, created when missing, once a probe file could be written into it and removed.

    Raises:
        OutputFolderError: it is a regular file, or it cannot be created or written; the message names it.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: output folder is a file, not a folder: pass another --output_dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(
            f"{folder}: output folder cannot be created ({exc.strerror or exc}): pass another --output_dir"
        ) from exc
    try:
        handle, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise OutputFolderError(
            f"{folder}: output folder cannot be written ({exc.strerror or exc}): check its permissions and free "
            "space, or pass another --output_dir"
        ) from exc
    return folder


def claim_output_folder(folder: str | os.PathLike) -> Path:
    """Check ``folder`` with :func:`require_writable_folder`, then lock it for this process until it ends.

    Meant for the inference config's ``"initialize"`` list, so that the checks run before any work; also
    called by :func:`~rformer_monai.workflows.pending_items` before it removes temporary files.

    Raises:
        OutputFolderError: the folder is not writable, or another run holds its lock.
    """
    folder = require_writable_folder(folder)
    key = folder.resolve()
    held = _held_locks.get(key)
    if held is not None:
        if os.path.samestat(os.fstat(held), os.stat(folder)):
            return folder
        os.close(held)  # the folder was removed and made again since: lock the new one
        del _held_locks[key]
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here, the folder is used unlocked
        return folder
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(descriptor)
        raise OutputFolderError(
            f"{folder}: another run is writing into this output folder: wait for it to end, or pass another "
            "--output_dir"
        ) from exc
    except OSError as exc:
        os.close(descriptor)
        if exc.errno in _LOCKS_UNSUPPORTED:
            logger.warning("%s: the file system does not support locks; do not start a second run here", folder)
            return folder
        raise
    _held_locks[key] = descriptor
    return folder
