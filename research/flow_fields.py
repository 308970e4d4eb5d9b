"""Flow fields (Cellpose, Stringer et al., Nature Methods 18, 100-106, 2021) as output heads of the bundle's network.

Beside its particle mask the network predicts, per pixel, the direction in which heat spreading from the
particle's centre flows backwards: the normalised gradient of a diffusion from the centre, kept inside the
particle (its steady state: Cellpose runs the diffusion for a fixed number of steps). The particle step moves every particle pixel along the predicted flows; the pixels that gather at
one point are one particle, and a particle whose own flows (recomputed from its outline) disagree with the
predicted ones is dropped.

Written here rather than imported: ``cellpose`` 4 needs a torchvision that does not match the pinned CPU
torch, and ``cellpose`` 3.1, which installs without torchvision, pins ``numpy<2.1`` and would downgrade numpy
for the whole toolkit. Merged after ``train.json`` by ``research/configs/flow_fields.json``.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Transform
from scipy import ndimage as ndi
from scipy import sparse
from scipy.sparse.linalg import spsolve
from skimage.segmentation import relabel_sequential

from rformer_monai.losses import WeightedMaskAndSeparationLoss
from rformer_monai.particles.labelling import label_particles
from rformer_monai.particles.separation import DEFAULT_MIN_SIZE_PX
from rformer_monai.transforms.array import _one_channel_mask, _stacked_like
from rformer_monai.transforms.dictionary import _LineWeightAndTargetd

FLOW_CHANNELS = 2
"""Vertical and horizontal flow."""
NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
DEFAULT_FOLLOW_STEPS = 200
"""Steps of one pixel (at most) that every particle pixel moves along the flows (Cellpose's default)."""
SINK_RADIUS_PX = 2
"""Pixels gathered within this Chebyshev distance of a sink belong to it."""
DEFAULT_MASK_THRESHOLD = 0.5
"""Particle probability above which a pixel follows the flows (Cellpose's cell probability 0 as a logit)."""
DEFAULT_FLOW_ERROR = 0.4
"""Mean squared difference between a particle's predicted and recomputed unit flows above which it is dropped
(Cellpose's default flow threshold)."""


def _shifted(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``array`` moved so that pixel (y, x) holds the value of (y + dy, x + dx), zero beyond the border."""
    shifted = np.zeros_like(array)
    height, width = array.shape
    shifted[max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)] = array[
        max(dy, 0) : height - max(-dy, 0), max(dx, 0) : width - max(-dx, 0)
    ]
    return shifted


def _centres(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of each particle's pixel nearest to its mean position."""
    index = np.arange(1, count + 1)
    mean = np.asarray(ndi.center_of_mass(np.ones(labels.shape), labels, index)).reshape(count, 2)
    rows, columns = np.nonzero(labels)
    particle = labels[rows, columns] - 1
    distance = (rows - mean[particle, 0]) ** 2 + (columns - mean[particle, 1]) ** 2
    order = np.lexsort((distance, particle))
    first = order[np.r_[0, np.flatnonzero(np.diff(particle[order])) + 1]]
    return rows[first], columns[first]


def diffusion_flows(labels: np.ndarray) -> np.ndarray:
    """Unit flows (2, H, W) (vertical, horizontal) of particle labels (H, W): the normalised gradient of
    ``log(1 + heat)``, the steady heat of a source at each particle's centre pixel spreading over the
    particle (every pixel the mean of itself and its 8 neighbours, pixels outside the particle held at 0),
    solved as one sparse linear system; zero on the background."""
    labels = np.asarray(labels).astype(np.int64, copy=False)
    flows = np.zeros((FLOW_CHANNELS, *labels.shape), dtype=np.float32)
    count = int(labels.max(initial=0))
    if count == 0:
        return flows
    inside = labels > 0
    same = {offset: (_shifted(labels, *offset) == labels) & inside for offset in NEIGHBOURS}
    index = np.full(labels.shape, -1, dtype=np.int64)
    index[inside] = np.arange(int(inside.sum()))
    rows, columns = [], []
    for offset, mask in same.items():
        rows.append(index[mask])
        columns.append(_shifted(index, *offset)[mask])
    size = int(inside.sum())
    adjacency = sparse.csr_matrix(
        (np.ones(sum(len(r) for r in rows)), (np.concatenate(rows), np.concatenate(columns))), shape=(size, size)
    )
    system = sparse.identity(size, format="csr") * len(NEIGHBOURS) - adjacency
    source = np.zeros(size)
    centre_rows, centre_columns = _centres(labels, count)
    source[index[centre_rows, centre_columns]] = len(NEIGHBOURS) + 1.0
    heat = np.zeros(labels.shape)
    heat[inside] = np.log1p(np.maximum(spsolve(system.tocsc(), source), 0.0))
    for axis, (ahead, behind) in enumerate((((1, 0), (-1, 0)), ((0, 1), (0, -1)))):
        flows[axis] = np.where(same[ahead], _shifted(heat, *ahead), 0.0) - np.where(same[behind], _shifted(heat, *behind), 0.0)
    length = np.sqrt((flows**2).sum(axis=0))
    flows /= np.maximum(length, np.finfo(np.float32).eps)
    flows[:, ~inside] = 0.0
    return flows


class FlowFields(Transform):
    """Append the flow targets to a binary mask (1, H, W): the vertical and horizontal unit flows of its
    4-connected particles (:func:`diffusion_flows`), mapped from [-1, 1] to [0, 1] (0.5 on the background)."""

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (3, H, W) float32 of ``mask``'s type: the 0/1 mask, the vertical and the horizontal flow."""
        array = _one_channel_mask(mask)
        flows = diffusion_flows(label_particles(array))
        return _stacked_like(mask, array, *(0.5 + 0.5 * flows))


class LineWeightAndFlowFieldsd(_LineWeightAndTargetd):
    """Append the loss weights around the separation lines and the flow targets (:class:`FlowFields`) to the
    masks under ``keys``: (4, H, W) labels for :class:`FlowFieldLoss`."""

    target = FlowFields


class FlowFieldLoss(WeightedMaskAndSeparationLoss):
    """The bundle's line-weighted Dice and cross-entropy on the particle mask plus the mean squared error of the
    flows (sigmoids of their logits against the targets in [0, 1]) over every pixel, the background's zero flow
    included, as in Cellpose.

    Args:
        cross_entropy_weight: weight of the mask's weighted cross-entropy term.
        flow_weight: weight of the flow term; 50 matches Cellpose's half mean squared error of flows scaled by 5.
    """

    def __init__(self, cross_entropy_weight: float = 1.0, flow_weight: float = 50.0) -> None:
        super().__init__(cross_entropy_weight, separation_weight=flow_weight)

    def separation_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the flows."""
        return torch.mean((torch.sigmoid(logits[:, 1:]) - target[:, self.mask_target_channels :]) ** 2)


def follow_flows(flows: np.ndarray, inside: np.ndarray, steps: int = DEFAULT_FOLLOW_STEPS) -> np.ndarray:
    """Where each pixel of ``inside`` (H, W) ends after ``steps`` moves along ``flows`` (2, H, W), read by
    linear interpolation at the moving position: (N, 2) rows and columns, in the order of ``np.nonzero``."""
    positions = np.stack(np.nonzero(inside), axis=1).astype(np.float64)
    limit = np.asarray(inside.shape, dtype=np.float64) - 1.0
    for _ in range(steps):
        step = np.stack([ndi.map_coordinates(channel, positions.T, order=1, mode="nearest") for channel in flows], axis=1)
        positions = np.clip(positions + step, 0.0, limit)
    return positions


def _sinks(rounded: np.ndarray, shape: tuple[int, int], min_size_px: int) -> np.ndarray:
    """Labels (H, W) of the points where at least ``min_size_px`` followed pixels gather, from their end points
    ``rounded`` (N, 2) to whole pixels: the local maxima of the end-point histogram, each widened by
    :data:`SINK_RADIUS_PX` over the histogram's support."""
    histogram = np.bincount(rounded[:, 0] * shape[1] + rounded[:, 1], minlength=shape[0] * shape[1]).reshape(shape)
    window = 2 * SINK_RADIUS_PX + 1
    gathered = ndi.uniform_filter(histogram.astype(np.float64), window) * window**2
    peaks = (histogram == ndi.maximum_filter(histogram, window)) & (histogram > 0) & (gathered >= min_size_px)
    sinks, _ = ndi.label(peaks)
    for _ in range(SINK_RADIUS_PX):
        grown = ndi.grey_dilation(sinks, size=3)
        sinks = np.where((sinks == 0) & (histogram > 0), grown, sinks)
    return sinks


def predicted_flows(separation: np.ndarray) -> np.ndarray:
    """The network's flow outputs (2, H, W), sigmoids in [0, 1], as flows in [-1, 1] (float64)."""
    return 2.0 * np.asarray(separation, dtype=np.float64) - 1.0


def followed_particles(
    probability: np.ndarray,
    separation: np.ndarray,
    threshold: float = DEFAULT_MASK_THRESHOLD,
    min_size_px: int = DEFAULT_MIN_SIZE_PX,
) -> np.ndarray:
    """Particle labels (H, W) before any is dropped: ``separation`` (2, H, W) holds the vertical and horizontal
    flows in [0, 1] (after the sigmoid). The pixels of ``probability`` above ``threshold`` follow the flows
    (:func:`follow_flows`); those that gather at one sink of at least ``min_size_px`` pixels are one particle."""
    separation = np.asarray(separation, dtype=np.float64)
    if separation.shape != (FLOW_CHANNELS, *np.shape(probability)):
        raise ValueError(f"separation must be ({FLOW_CHANNELS}, H, W) of probability's size, got {separation.shape}.")
    inside = np.asarray(probability) > threshold
    labels = np.zeros(inside.shape, dtype=np.int64)
    if inside.any():
        rounded = np.rint(follow_flows(predicted_flows(separation), inside)).astype(np.int64)
        labels[inside] = _sinks(rounded, inside.shape, min_size_px)[rounded[:, 0], rounded[:, 1]]
    return labels


def particle_flow_errors(labels: np.ndarray, separation: np.ndarray) -> np.ndarray:
    """For particles 1 to N of ``labels``, the mean squared difference between the predicted flows
    (``separation``, in [0, 1]) and their own unit flows recomputed from their outline (:func:`diffusion_flows`)."""
    labels = np.asarray(labels).astype(np.int64, copy=False)
    error = (predicted_flows(separation) - diffusion_flows(labels)) ** 2
    particles = np.arange(1, int(labels.max(initial=0)) + 1)
    return np.asarray(ndi.mean(error.sum(axis=0), labels, particles), dtype=np.float64)


def drop_particles(
    labels: np.ndarray,
    flow_errors: np.ndarray,
    flow_error: float = DEFAULT_FLOW_ERROR,
    min_size_px: int = DEFAULT_MIN_SIZE_PX,
) -> np.ndarray:
    """``labels`` without the particles under ``min_size_px`` and those whose ``flow_errors``
    (:func:`particle_flow_errors`) exceed ``flow_error``, numbered 1 to N again."""
    labels = np.array(labels, dtype=np.int64)
    areas = np.bincount(labels.ravel(), minlength=len(flow_errors) + 1)
    dropped = np.r_[False, (areas[1:] < min_size_px) | (np.asarray(flow_errors) > flow_error)]
    labels[dropped[labels]] = 0
    return relabel_sequential(labels)[0].astype(np.int32)


def flow_particles(
    probability: np.ndarray,
    separation: np.ndarray,
    threshold: float = DEFAULT_MASK_THRESHOLD,
    flow_error: float = DEFAULT_FLOW_ERROR,
    min_size_px: int = DEFAULT_MIN_SIZE_PX,
) -> np.ndarray:
    """Particle labels (H, W) from a network's flow outputs: the particles the flows gather
    (:func:`followed_particles`) less those that are too small or whose flows disagree with their outline by
    more than ``flow_error`` (:func:`particle_flow_errors`, :func:`drop_particles`)."""
    labels = followed_particles(probability, separation, threshold, min_size_px)
    return drop_particles(labels, particle_flow_errors(labels, separation), flow_error, min_size_px)
