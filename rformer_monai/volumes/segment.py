"""Segment stacks slice by slice with the bundle's 2-D network, then find and measure 3-D particles.

Memory stays bounded during the network pass: one slice is read, normalised with the whole stack's intensity
statistics (one streaming pass before), predicted by sliding windows and written as uint8 (probability x 255)
to a ``.npy`` file beside the outputs with an ordinary write (:class:`SliceFile`); no more than one slice of
float data is held. The 3-D particle step reads that file back slab by slab and cluster by cluster
(:func:`~rformer_monai.volumes.clusters.particles_in_slabs`), and the label volume is written from disk slab by slab.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from rformer_monai.inference.blocks import IntensityStatistics, normalise_block, predict_probability
from rformer_monai.inference.particle_blocks import RawPlane
from rformer_monai.particles import DEFAULT_PARTICLE_THRESHOLD
from rformer_monai.particles.measurement import size_statistics
from rformer_monai.transforms.pipelines import DEFAULT_INTENSITY
from rformer_monai.volumes.clusters import particles_in_slabs, slabbed_file
from rformer_monai.volumes.instances import (
    DEFAULT_MARKER_HEIGHT_VOXELS,
    DEFAULT_MIN_SIZE_VOXELS,
    PROBABILITY_LEVELS_UINT8,
)
from rformer_monai.volumes.io import VolumeSource, find_stacks, open_stack, stack_stem
from rformer_monai.volumes.outputs import (
    LABELS_NIFTI_SUFFIX,
    LABELS_TIFF_SUFFIX,
    PARTICLES_SUFFIX,
    PROBABILITY_SUFFIX,
    SIZE_DISTRIBUTION_SUFFIX,
    STACK_OUTPUT_SUFFIXES,
    VIEWS_SUFFIX,
    centre_planes,
    plot_orthogonal_views,
    plot_size_distribution_3d,
    write_imagej_stack,
    write_labels_nifti,
    write_labels_tiff,
    write_particle_table_3d,
)

logger = logging.getLogger(__name__)

ISOTROPY_TOLERANCE = 1.25
"""Orthogonal averaging needs a near-isotropic stack: largest / smallest spacing at most this (the network
sees xz and yz planes at the pixel size it was trained for only then)."""
WORK_DIR_TEMPLATE = ".{stem}_work"
SUMMARY_FILENAME = "summary_3d.csv"
SUMMARY_COLUMNS = ("stack", "particles", "particles_inside", "esd_mean_nm", "esd_d10_nm", "esd_d50_nm",
                   "esd_d90_nm", "spacing_z_nm", "spacing_y_nm", "spacing_x_nm")


class SliceFile(RawPlane):
    """A ``(z, y, x)`` uint8 ``.npy`` file written one z-slice at a time with ``os.pwrite``: the written slices
    live in the page cache, not in the process (a memory map would count every touched page to its resident
    memory). It is read back by slab or by region (:class:`~rformer_monai.inference.particle_blocks.RawPlane`),
    or with ``numpy.load(path, mmap_mode="r")``.
    """

    def __init__(self, path: str | os.PathLike, shape: Sequence[int]) -> None:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": tuple(int(side) for side in shape)}
        )
        super().__init__(path, shape, np.uint8, header.getvalue())
        self._slice_bytes = self.shape[1] * self.shape[2]
        self._descriptor = os.open(self.path, os.O_WRONLY)

    def __setitem__(self, index: int, plane: np.ndarray) -> None:
        plane = np.ascontiguousarray(plane, dtype=self.dtype)
        if plane.shape != self.shape[1:]:
            raise ValueError(f"a slice of {self.path} must have shape {self.shape[1:]}, got {plane.shape}.")
        os.pwrite(self._descriptor, plane.tobytes(), self.offset + int(index) * self._slice_bytes)

    def close(self) -> None:
        """Close the writer (reading goes on)."""
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1


def stack_intensity_statistics(source: VolumeSource) -> IntensityStatistics:
    """Mean, std, minimum and maximum of the whole stack in one streaming pass (Chan's update in float64), so
    every slice is normalised alike, as the 2-D pipeline normalises a whole micrograph."""
    count, mean, m2 = 0, 0.0, 0.0
    minimum, maximum = math.inf, -math.inf
    for index in range(source.shape[0]):
        plane = source.read_slice(index).astype(np.float64)
        plane_mean = float(plane.mean())
        plane_m2 = float(np.square(plane - plane_mean).sum())
        delta, total = plane_mean - mean, count + plane.size
        mean += delta * plane.size / total
        m2 += plane_m2 + delta * delta * count * plane.size / total
        count = total
        minimum, maximum = min(minimum, float(plane.min())), max(maximum, float(plane.max()))
    return IntensityStatistics(mean=mean, std=math.sqrt(m2 / count), minimum=minimum, maximum=maximum, pixels=count)


def _to_uint8(probability: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(probability, 0.0, 1.0) * PROBABILITY_LEVELS_UINT8).astype(np.uint8)


def predict_stack_probability(
    source: VolumeSource,
    output: np.ndarray,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: Any,
    device: torch.device,
    amp: bool = False,
    intensity: str = DEFAULT_INTENSITY,
    orthogonal: bool = False,
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Write the particle probability of every voxel into ``output`` (uint8, probability x 255).

    Args:
        source: the stack.
        output: where the ``(z, y, x)`` uint8 slices go (``output[z] = slice``): a :class:`SliceFile` or an array.
        network, inferer, device, amp: as the bundle's inference config builds them.
        intensity: the bundle's ``intensity`` normalisation, with the stack's statistics.
        orthogonal: also predict the xz and yz planes and average the three directions (near-isotropic stacks
            only, see :data:`ISOTROPY_TOLERANCE`; three times the time, and the stack is copied to ``work_dir``).
        work_dir: where the copy of the stack for ``orthogonal`` goes.
        progress: show a progress bar.

    Returns:
        The grey planes through the stack's centre for the orthogonal views: ``{"xy", "xz", "yz"}``.
    """
    depth, height, width = source.shape
    if output.shape != source.shape or output.dtype != np.uint8:
        raise ValueError(f"output must be uint8 of shape {source.shape}, got {output.dtype} {output.shape}.")
    spacing = np.asarray(source.spacing_nm)
    if orthogonal and spacing.max() / spacing.min() > ISOTROPY_TOLERANCE:
        raise ValueError(
            f"orthogonal averaging needs a near-isotropic stack (largest/smallest spacing <= {ISOTROPY_TOLERANCE}); "
            f"{source.path} has spacing {tuple(source.spacing_nm)} nm: set orthogonal to false."
        )
    if orthogonal and work_dir is None:
        raise ValueError("orthogonal averaging needs a work_dir for the copy of the stack.")
    if isinstance(network, torch.nn.Module):
        network.eval()
    statistics = stack_intensity_statistics(source)
    centre = (depth // 2, height // 2, width // 2)
    planes = {"xz": np.empty((depth, width), source.dtype), "yz": np.empty((depth, height), source.dtype)}
    copy = total = None
    if orthogonal:
        copy = np.lib.format.open_memmap(Path(work_dir) / "stack.npy", mode="w+", dtype=source.dtype, shape=source.shape)
        # the sum of three uint8 probabilities fits uint16; kept on disk beside the copy
        total = np.lib.format.open_memmap(Path(work_dir) / "sum.npy", mode="w+", dtype=np.uint16, shape=source.shape)

    def predict(plane: np.ndarray) -> np.ndarray:
        return predict_probability(normalise_block(plane, intensity, statistics), network, inferer, device, amp)

    for index in tqdm(range(depth), desc=f"{source.path.name} xy", disable=not progress):
        plane = source.read_slice(index)
        if index == centre[0]:
            planes["xy"] = plane.copy()
        planes["xz"][index], planes["yz"][index] = plane[centre[1]], plane[:, centre[2]]
        probability = _to_uint8(predict(plane))
        if copy is None:
            output[index] = probability
        else:
            copy[index], total[index] = plane, probability
    if copy is None:
        return planes
    for row in tqdm(range(height), desc=f"{source.path.name} xz", disable=not progress):
        total[:, row, :] += _to_uint8(predict(np.asarray(copy[:, row, :])))
    for column in tqdm(range(width), desc=f"{source.path.name} yz", disable=not progress):
        total[:, :, column] += _to_uint8(predict(np.asarray(copy[:, :, column])))
    for index in range(depth):
        output[index] = np.rint(total[index] / 3.0).astype(np.uint8)
    del total, copy
    return planes


def segment_stack(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: Any,
    device: torch.device | str = "cpu",
    amp: bool = False,
    intensity: str = DEFAULT_INTENSITY,
    spacing_nm: Sequence[float] | None = None,
    threshold: float = DEFAULT_PARTICLE_THRESHOLD,
    marker_height_voxels: float = DEFAULT_MARKER_HEIGHT_VOXELS,
    min_size_voxels: int = DEFAULT_MIN_SIZE_VOXELS,
    orthogonal: bool = False,
    save_probability: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment one stack and write its outputs (:data:`~rformer_monai.volumes.outputs.STACK_OUTPUT_SUFFIXES`).

    Args:
        path: the stack (see :func:`~rformer_monai.volumes.io.open_stack`).
        output_dir: where ``<stem><suffix>`` go.
        network, inferer, device, amp, intensity: the bundle's inference settings.
        spacing_nm: ``(z, y, x)`` spacing overriding the file's.
        threshold: particle probability threshold of the 3-D particle step.
        marker_height_voxels, min_size_voxels: see :func:`~rformer_monai.volumes.label_instances_3d`.
        orthogonal: average the three orthogonal directions (see :func:`predict_stack_probability`).
        save_probability: also write ``<stem>_prob.tif`` (uint8, probability x 255).
        progress: show progress bars.

    Returns:
        This stack's row of ``summary_3d.csv``.
    """
    output_dir = Path(output_dir)
    stem = stack_stem(path)
    work_dir = output_dir / WORK_DIR_TEMPLATE.format(stem=stem)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open_stack(path, spacing_nm) as source:
            logger.info("%s: %s voxels, spacing %s nm (%s)", path, source.shape, source.spacing_nm, source.spacing_source)
            writer = SliceFile(work_dir / "probability.npy", source.shape)
            try:
                planes = predict_stack_probability(
                    source, writer, network, inferer, torch.device(device), amp, intensity, orthogonal, work_dir,
                    progress,
                )
            finally:
                writer.close()
            spacing = source.spacing_nm
        if save_probability:
            write_imagej_stack(output_dir / f"{stem}{PROBABILITY_SUFFIX}", slabbed_file(writer), spacing)
        particles = particles_in_slabs(
            writer, work_dir, spacing, threshold, marker_height_voxels, min_size_voxels, progress=progress
        )
        columns = particles.columns
        write_particle_table_3d(output_dir / f"{stem}{PARTICLES_SUFFIX}", columns)
        inside = columns["esd_nm"][~columns["touches_edge"]]
        plot_size_distribution_3d(output_dir / f"{stem}{SIZE_DISTRIBUTION_SUFFIX}", inside, f"{stem}, inside the stack")
        labels = particles.label_volume()
        centre = tuple(side // 2 for side in labels.shape)
        plot_orthogonal_views(
            output_dir / f"{stem}{VIEWS_SUFFIX}",
            (planes["xy"], planes["xz"], planes["yz"]),
            centre_planes(labels, centre),
            spacing,
            centre,
        )
        write_labels_tiff(output_dir / f"{stem}{LABELS_TIFF_SUFFIX}", labels, spacing)
        write_labels_nifti(output_dir / f"{stem}{LABELS_NIFTI_SUFFIX}", labels, spacing)  # last: marks it done
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    statistics = size_statistics(inside)
    return {
        "stack": str(path), "particles": len(columns["label"]), "particles_inside": statistics["count"],
        "esd_mean_nm": statistics["mean"], "esd_d10_nm": statistics["d10"], "esd_d50_nm": statistics["d50"],
        "esd_d90_nm": statistics["d90"], "spacing_z_nm": spacing[0], "spacing_y_nm": spacing[1],
        "spacing_x_nm": spacing[2],
    }


def stack_is_done(path: str | os.PathLike, output_dir: str | os.PathLike) -> bool:
    """Whether every output of the stack exists in ``output_dir``."""
    stem = stack_stem(path)
    return all((Path(output_dir) / f"{stem}{suffix}").is_file() for suffix in STACK_OUTPUT_SUFFIXES)


def segment_stacks(
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    network: Callable[[torch.Tensor], torch.Tensor],
    inferer: Any,
    device: torch.device | str = "cpu",
    amp: bool = False,
    intensity: str = DEFAULT_INTENSITY,
    spacing_nm: Sequence[float] | None = None,
    particles: Mapping[str, Any] | None = None,
    orthogonal: bool = False,
    save_probability: bool = False,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Segment every stack under ``dataset_dir`` (the bundle's 3-D ``run``): a stack that fails is listed in
    ``OUT/failed.csv`` and the others go on; the run then raises.

    Args:
        dataset_dir: a stack, or a folder searched recursively for stacks.
        output_dir: where the outputs and ``summary_3d.csv`` go.
        network, inferer, device, amp, intensity: the bundle's inference settings.
        spacing_nm: ``(z, y, x)`` spacing for every stack, overriding the files'; None reads it from each file.
        particles: keyword arguments of :func:`segment_stack`'s particle step (``threshold``,
            ``marker_height_voxels``, ``min_size_voxels``).
        orthogonal: average the three orthogonal directions (near-isotropic stacks).
        save_probability: also write ``<stem>_prob.tif``.
        overwrite: redo stacks whose outputs all exist.

    Returns:
        One summary row per stack processed in this run.

    Raises:
        FailedInputsError: when a stack failed (after all others were processed).
    """
    from rformer_monai.files import write_csv_atomic
    from rformer_monai.workflows.batch import FailureLog

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    failure_log = FailureLog(output_dir / "failed.csv")
    rows = []
    for path in find_stacks(dataset_dir):
        if not overwrite and stack_is_done(path, output_dir):
            logger.info("%s: outputs exist, skipped (overwrite=true redoes it)", path)
            continue
        failure_log.count()
        try:
            rows.append(segment_stack(
                path, output_dir, network, inferer, device, amp, intensity, spacing_nm,
                orthogonal=orthogonal, save_probability=save_probability, **dict(particles or {}),
            ))
        except (ValueError, OSError) as exc:  # StackReadError is a ValueError
            failure_log.record(str(path), str(exc))
    if rows:
        write_csv_atomic(output_dir / SUMMARY_FILENAME, rows, SUMMARY_COLUMNS)
    failure_log.raise_if_failed()
    return rows
