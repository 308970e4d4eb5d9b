"""A synthetic 3-D SEM stack generator: spheres and ellipsoids of known sizes, some in touching pairs, rendered
slice by slice as a FIB-SEM serial section would show them (bright particle cuts on a dark, drifting support,
edge brightening, detector shading, beam blur, shot and read noise), with an optionally anisotropic spacing.

The labels are the truth: every particle's voxels are those whose centres lie inside its ellipsoid (where two
touching particles overlap, the voxel goes to the particle it lies deeper inside), so measurements can be
checked against the drawn sizes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from rformer_monai.files import write_atomic
from rformer_monai.volumes.outputs import write_imagej_stack

DEFAULT_SHAPE = (40, 128, 128)
DEFAULT_SPACING_NM = (15.0, 7.5, 7.5)  # FIB-SEM-like: slices twice as thick as the pixel size
DEFAULT_DIAMETER_RANGE_NM = (100.0, 200.0)  # 13 to 27 px in-plane, like the 2-D generator's particles
DEFAULT_NUM_SEPARATE = 6
DEFAULT_NUM_TOUCHING_PAIRS = 2
DEFAULT_ELLIPSOID_FRACTION = 0.3  # of the separate particles
ELLIPSOID_AXIS_RATIO_RANGE = (0.7, 1.3)  # semi-axis / mean radius, per axis
CONTACT_DISTANCE_RANGE = (0.80, 0.92)  # centre distance / sum of radii of a touching pair: a visible neck
MIN_GAP_VOXELS = 3.0  # between separate particles, and from the stack's faces, in voxels of the largest side
MAX_PLACEMENT_TRIES = 500  # positions tried per particle
MAX_LAYOUT_TRIES = 50  # fresh layouts tried when a particle finds no place

# appearance (grey levels of an 8-bit SEM image, as rformer_monai.data.synthetic)
BACKGROUND_LEVEL = 30.0
BACKGROUND_DRIFT_AMPLITUDE = 4.0
BACKGROUND_DRIFT_SIGMA_PX = 30.0
PARTICLE_LEVEL_RANGE = (90.0, 150.0)
EDGE_GAIN = 50.0
EDGE_WIDTH_PX = 2.0
SHADING_GRADIENT_MAX = 0.2  # relative brightness change across a particle towards the detector
DETECTOR_ANGLE_RAD = -0.75 * math.pi
PSF_SIGMA_PX = 0.9
ELECTRONS_PER_GREY_LEVEL = 1.5
READ_NOISE_STD = 2.0

IMAGES_DIRNAME = "images"
LABELS_DIRNAME = "labels"
TRUTH_SUFFIX = "_truth.json"
STACK_NAME_TEMPLATE = "synthetic_stack_{index:03d}.tif"
GENERATOR_VERSION = 1


@dataclass
class SyntheticVolume:
    """A rendered stack and its truth.

    Attributes:
        image: ``(z, y, x)`` uint8 grey levels.
        labels: ``(z, y, x)`` int32 particle numbers (0 background), the truth.
        spacing_nm: ``(z, y, x)`` voxel spacing in nm.
        particles: one dict per label: ``label``, ``kind`` (``"sphere"``/``"ellipsoid"``), ``semi_axes_nm``
            ``(z, y, x)``, ``centre_nm`` ``(z, y, x)``, ``esd_nm`` (of the drawn ellipsoid), ``pair``
            (the touching pair's number, or None).
    """

    image: np.ndarray
    labels: np.ndarray
    spacing_nm: tuple[float, float, float]
    particles: list[dict]


def _coordinates_nm(shape: Sequence[int], spacing_nm: Sequence[float]) -> list[np.ndarray]:
    return [(np.arange(side) + 0.5) * step for side, step in zip(shape, spacing_nm)]


def _draw_particles(
    shape: tuple[int, int, int],
    spacing_nm: tuple[float, float, float],
    num_separate: int,
    num_touching_pairs: int,
    diameter_range_nm: tuple[float, float],
    ellipsoid_fraction: float,
    generator: np.random.Generator,
) -> list[dict]:
    extent = np.array(shape) * np.array(spacing_nm)
    gap = MIN_GAP_VOXELS * max(spacing_nm)
    placed: list[dict] = []  # each with a bounding radius for the gap test

    def fits(centre: np.ndarray, radius: float) -> bool:
        if np.any(centre - radius < gap) or np.any(centre + radius > extent - gap):
            return False
        return all(np.linalg.norm(centre - other["centre"]) >= radius + other["radius"] + gap for other in placed)

    def place(radius: float) -> np.ndarray:
        for _ in range(MAX_PLACEMENT_TRIES):
            centre = generator.uniform(0, extent)
            if fits(centre, radius):
                return centre
        raise _NoPlace

    for _ in range(MAX_LAYOUT_TRIES):
        placed.clear()
        try:
            return _layout(place, placed, num_separate, num_touching_pairs, diameter_range_nm, ellipsoid_fraction, generator)
        except _NoPlace:
            continue
    raise ValueError(
        f"cannot place {num_separate} separate particles and {num_touching_pairs} touching pairs of "
        f"{tuple(diameter_range_nm)} nm in a stack of {tuple(float(side) for side in extent)} nm: use a larger "
        f"shape or fewer particles."
    )


class _NoPlace(Exception):
    """No free position for a particle in the current layout."""


def _layout(place, placed, num_separate, num_touching_pairs, diameter_range_nm, ellipsoid_fraction, generator) -> list[dict]:
    particles = []
    for pair in range(num_touching_pairs):
        radii = generator.uniform(*diameter_range_nm, size=2) / 2
        distance = radii.sum() * generator.uniform(*CONTACT_DISTANCE_RANGE)
        direction = generator.normal(size=3)
        direction[0] *= 0.3  # mostly in-plane, as FIB-SEM agglomerates are seen
        direction /= np.linalg.norm(direction)
        offset_first = direction * distance * radii[1] / radii.sum()
        bounding = max(distance * radii[1] / radii.sum() + radii[0], distance * radii[0] / radii.sum() + radii[1])
        middle = place(bounding)
        placed.append({"centre": middle, "radius": bounding})
        for radius, centre in ((radii[0], middle - offset_first), (radii[1], middle - offset_first + direction * distance)):
            particles.append({"kind": "sphere", "semi_axes_nm": (radius,) * 3, "centre_nm": tuple(centre), "pair": pair})
    for _ in range(num_separate):
        radius = generator.uniform(*diameter_range_nm) / 2
        if generator.random() < ellipsoid_fraction:
            semi_axes = tuple(radius * generator.uniform(*ELLIPSOID_AXIS_RATIO_RANGE, size=3))
            kind = "ellipsoid"
        else:
            semi_axes, kind = (radius,) * 3, "sphere"
        bounding = max(semi_axes)
        centre = place(bounding)
        placed.append({"centre": centre, "radius": bounding})
        particles.append({"kind": kind, "semi_axes_nm": semi_axes, "centre_nm": tuple(centre), "pair": None})
    for label, particle in enumerate(particles, start=1):
        particle["label"] = label
        particle["semi_axes_nm"] = tuple(float(value) for value in particle["semi_axes_nm"])
        particle["centre_nm"] = tuple(float(value) for value in particle["centre_nm"])
        particle["esd_nm"] = 2 * float(np.prod(particle["semi_axes_nm"])) ** (1 / 3)
    return particles


def draw_labels(shape: Sequence[int], spacing_nm: Sequence[float], particles: Sequence[dict]) -> np.ndarray:
    """The ``(z, y, x)`` int32 label volume of axis-aligned ellipsoids (``particles`` as in
    :class:`SyntheticVolume`); an overlapped voxel goes to the particle it lies deeper inside."""
    labels = np.zeros(tuple(shape), dtype=np.int32)
    depth = np.full(tuple(shape), np.inf, dtype=np.float32)
    axes = _coordinates_nm(shape, spacing_nm)
    for particle in particles:
        centre, semi = np.array(particle["centre_nm"]), np.array(particle["semi_axes_nm"])
        window = []
        for axis, (coordinates, step) in enumerate(zip(axes, spacing_nm)):
            low = max(0, int((centre[axis] - semi[axis]) / step) - 1)
            high = min(len(coordinates), int((centre[axis] + semi[axis]) / step) + 2)
            window.append(slice(low, high))
        z, y, x = np.meshgrid(*(axes[axis][window[axis]] for axis in range(3)), indexing="ij")
        value = ((z - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2 + ((x - centre[2]) / semi[2]) ** 2
        inside = (value <= 1) & (value < depth[tuple(window)])
        labels[tuple(window)][inside] = particle["label"]
        depth[tuple(window)][inside] = value[inside]
    return labels


def render_slice(labels: np.ndarray, generator: np.random.Generator, levels: np.ndarray) -> np.ndarray:
    """One SEM-like ``(y, x)`` float image of a label slice; ``levels[label]`` is each particle's brightness."""
    height, width = labels.shape
    drift = ndi.gaussian_filter(generator.normal(size=(height, width)), BACKGROUND_DRIFT_SIGMA_PX, mode="wrap")
    drift *= BACKGROUND_DRIFT_AMPLITUDE / max(float(drift.std()), 1e-12)
    image = BACKGROUND_LEVEL + drift
    particle = labels > 0
    if particle.any():
        # distance to the cut's outline: each particle's own, so touching particles keep their rims
        boundary = particle & ~ndi.binary_erosion(particle) | (ndi.grey_dilation(labels, size=3) != labels) & particle
        distance = ndi.distance_transform_edt(~boundary)
        rows, cols = np.mgrid[0:height, 0:width]
        direction = np.array([math.sin(DETECTOR_ANGLE_RAD), math.cos(DETECTOR_ANGLE_RAD)])
        shading = (rows * direction[0] + cols * direction[1]) / max(height, width)
        body = levels[labels] * (1 + SHADING_GRADIENT_MAX * shading)
        edge = EDGE_GAIN * np.exp(-distance / EDGE_WIDTH_PX)
        image = np.where(particle, body + edge, image)
    image = ndi.gaussian_filter(image, PSF_SIGMA_PX)
    counts = generator.poisson(np.clip(image, 0, None) * ELECTRONS_PER_GREY_LEVEL) / ELECTRONS_PER_GREY_LEVEL
    return counts + generator.normal(scale=READ_NOISE_STD, size=image.shape)


def make_synthetic_volume(
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing_nm: Sequence[float] = DEFAULT_SPACING_NM,
    num_separate: int = DEFAULT_NUM_SEPARATE,
    num_touching_pairs: int = DEFAULT_NUM_TOUCHING_PAIRS,
    diameter_range_nm: Sequence[float] = DEFAULT_DIAMETER_RANGE_NM,
    ellipsoid_fraction: float = DEFAULT_ELLIPSOID_FRACTION,
    seed: int = 0,
) -> SyntheticVolume:
    """Draw and render a synthetic stack.

    Args:
        shape: ``(z, y, x)`` voxels.
        spacing_nm: ``(z, y, x)`` spacing in nm (anisotropic allowed).
        num_separate: particles at least :data:`MIN_GAP_VOXELS` from each other and from the faces.
        num_touching_pairs: pairs of spheres overlapping by a neck (centre distance
            :data:`CONTACT_DISTANCE_RANGE` of the sum of radii).
        diameter_range_nm: diameters (of spheres; mean diameters of ellipsoids) drawn uniformly from this range.
        ellipsoid_fraction: share of the separate particles drawn as axis-aligned ellipsoids.
        seed: the same seed gives the same stack.
    """
    shape = tuple(int(side) for side in shape)
    spacing = tuple(float(value) for value in spacing_nm)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes (z, y, x), got {shape!r}.")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing_nm must be three positive numbers (z, y, x), got {spacing_nm!r}.")
    if not 0 <= ellipsoid_fraction <= 1:
        raise ValueError(f"ellipsoid_fraction must be in [0, 1], got {ellipsoid_fraction}.")
    generator = np.random.default_rng(seed)
    particles = _draw_particles(
        shape, spacing, int(num_separate), int(num_touching_pairs), tuple(diameter_range_nm), ellipsoid_fraction, generator
    )
    labels = draw_labels(shape, spacing, particles)
    levels = np.concatenate([[0.0], generator.uniform(*PARTICLE_LEVEL_RANGE, size=len(particles))])
    image = np.stack([render_slice(labels[index], generator, levels) for index in range(shape[0])])
    return SyntheticVolume(np.clip(np.rint(image), 0, 255).astype(np.uint8), labels, spacing, particles)


def make_synthetic_stacks(
    folder: str | os.PathLike, num_stacks: int = 1, seed: int = 0, **options
) -> str:
    """Write ``num_stacks`` synthetic stacks to ``<folder>/images`` (ImageJ TIFF with spacing) and their truth to
    ``<folder>/labels`` (label stacks and ``<stem>_truth.json``); existing files of the same settings are kept.

    Args:
        folder: where to write.
        num_stacks: how many stacks (seeds ``seed``, ``seed + 1``, ...).
        seed: the first stack's seed.
        options: :func:`make_synthetic_volume`'s other arguments.

    Returns:
        The images folder, as a string (a bundle's ``dataset_dir``).
    """
    folder = Path(folder)
    images, labels = folder / IMAGES_DIRNAME, folder / LABELS_DIRNAME
    for index in range(int(num_stacks)):
        name = STACK_NAME_TEMPLATE.format(index=index)
        truth_path = labels / (Path(name).stem + TRUTH_SUFFIX)
        settings = {"version": GENERATOR_VERSION, "seed": seed + index, **json.loads(json.dumps(options))}
        cached = (images / name).is_file() and truth_path.is_file()
        if cached and json.loads(truth_path.read_text()).get("settings") == settings:
            continue
        volume = make_synthetic_volume(seed=seed + index, **options)
        write_imagej_stack(images / name, volume.image, volume.spacing_nm)
        write_imagej_stack(labels / name, volume.labels.astype(np.uint16), volume.spacing_nm)
        truth = json.dumps({"settings": settings, "spacing_nm": list(volume.spacing_nm), "particles": volume.particles},
                           indent=1)
        write_atomic(truth_path, lambda temporary, text=truth: temporary.write_text(text))
    return str(images)
