"""Writing inference outputs: ``<stem>_mask.tif`` (uint8 0/255, the input's full size) and optionally
``<stem>_prob.tif`` (float32 particle probability). Files are written atomically (temporary file, then
rename), so an interrupted run never leaves a half-written file that looks complete."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from rformer_monai.engines.settings import as_bool

MASK_SUFFIX = "_mask.tif"
PROBABILITY_SUFFIX = "_prob.tif"
MASK_FOREGROUND = 255
DEFAULT_THRESHOLD = 0.5
FILE_MODE = 0o666  # before the umask, as open() would create it
TEMPORARY_SUFFIX = ".tmp"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through ``write(temporary)`` on a temporary file in the same folder, then a rename.

    A reader (or a rerun) sees the old file or the complete new one, never a half-written file; the
    temporary file is removed when ``write`` fails, and one left by a killed process is named by
    :func:`partial_writes`. The file gets the permissions ``open()`` would have given it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, FILE_MODE & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def partial_writes(path: str | os.PathLike) -> list[Path]:
    """Temporary files that :func:`write_atomic` left beside ``path`` when its process was killed mid-write."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{TEMPORARY_SUFFIX}"))


def write_tiff_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` to ``path`` as a compressed TIFF via a temporary file in the same folder and a rename."""
    import tifffile

    return write_atomic(path, lambda temporary: tifffile.imwrite(temporary, array, compression="zlib"))


def output_stem(source: str | os.PathLike) -> str:
    """The output name stem of an input file: its file name without the suffix."""
    return Path(str(source)).stem


class SaveMaskd(MapTransform):
    """Save the particle probability under ``keys`` (1, H, W) as ``OUT/<stem>_mask.tif`` (uint8 0/255).

    Args:
        keys: keys of the probability maps (after ``Invertd``, at the input's full size).
        output_dir: the output folder.
        threshold: probability above which a pixel is particle.
        save_probability: also write ``OUT/<stem>_prob.tif`` (float32).
        source_key: key of the input image whose ``filename_or_obj`` names the outputs.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        threshold: float = DEFAULT_THRESHOLD,
        save_probability: bool = False,
        source_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.save_probability = as_bool(save_probability, "save_probability")
        self.source_key = source_key

    def _source_name(self, d: Mapping[Hashable, torch.Tensor], key: Hashable) -> str:
        for candidate in (d.get(key), d.get(self.source_key)):
            if isinstance(candidate, MetaTensor) and "filename_or_obj" in candidate.meta:
                return str(candidate.meta["filename_or_obj"])
        raise ValueError(f"cannot name the output of {key!r}: no 'filename_or_obj' in its meta or in {self.source_key!r}.")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            probability = d[key].detach().cpu().float().numpy()[0]
            stem = output_stem(self._source_name(d, key))
            mask = np.where(probability > self.threshold, MASK_FOREGROUND, 0).astype(np.uint8)
            write_tiff_atomic(self.output_dir / f"{stem}{MASK_SUFFIX}", mask)
            if self.save_probability:
                write_tiff_atomic(self.output_dir / f"{stem}{PROBABILITY_SUFFIX}", probability.astype(np.float32))
        return d
