"""Star-convex polygons (StarDist, Schmidt et al., MICCAI 2018) as output heads of the bundle's network.

Beside its particle mask the network predicts, per pixel, an object probability (the distance to the
particle's border, normalised to 1 at its centre) and the distances to the particle's border along
:data:`DEFAULT_RAYS` rays. The particle step keeps the polygons of the most probable pixels that do not
overlap a better one (polygon non-maximum suppression) and draws them as labels. Targets, suppression and
drawing are stardist's own tested code (``pip install stardist``; it runs without TensorFlow).

Merged after ``train.json`` by ``research/configs/star_polygons.json``; evaluation merges the same file.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Transform
from skimage.segmentation import relabel_sequential, watershed
from stardist import edt_prob, non_maximum_suppression, polygons_to_label, star_dist

from rformer_monai.losses import WeightedMaskAndSeparationLoss
from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD
from rformer_monai.particles.labelling import label_particles
from rformer_monai.particles.separation import DEFAULT_MIN_SIZE_PX
from rformer_monai.transforms.array import _one_channel_mask, _stacked_like
from rformer_monai.transforms.dictionary import _LineWeightAndTargetd

DEFAULT_RAYS = 32
"""Rays per polygon: the 30 BAM masks redrawn as 32-ray polygons score particle F1 0.978 against themselves."""
MAX_RAY_PX = 128.0
"""Ray length (pixels) predicted as 1: the longest ray of the BAM masks is 86 px (99.9th percentile 74 px)."""
DEFAULT_OBJECT_THRESHOLD = 0.5
"""Object probability above which a pixel proposes its polygon (stardist's default)."""
DEFAULT_OVERLAP_THRESHOLD = 0.4
"""Overlap (intersection over the smaller polygon's area) above which the less probable polygon is dropped
(stardist's default)."""
STARDIST_RAY_WEIGHT = 0.2
"""Weight of the ray error per pixel beside the object probability's cross-entropy (stardist's
``train_loss_weights``)."""
POLYGON_CHANNELS_BEFORE_RAYS = 1
"""Separation channels ahead of the rays: the object probability."""


class StarPolygons(Transform):
    """Append the star-convex polygon targets to a binary mask (1, H, W): the object probability (stardist's
    ``edt_prob`` of the mask's 4-connected particles) and the ``n_rays`` ray lengths over :data:`MAX_RAY_PX`,
    clipped to [0, 1].

    Args:
        n_rays: rays per polygon, evenly spaced over the full turn.
    """

    def __init__(self, n_rays: int = DEFAULT_RAYS) -> None:
        if isinstance(n_rays, bool) or not isinstance(n_rays, int) or n_rays < 3:
            raise ValueError(f"n_rays must be a whole number >= 3, got {n_rays!r}.")
        self.n_rays = n_rays

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Return (2 + n_rays, H, W) float32 of ``mask``'s type: the 0/1 mask, the object probability, the rays."""
        array = _one_channel_mask(mask)
        labels = label_particles(array).astype(np.int32)
        probability = edt_prob(labels)
        rays = np.clip(star_dist(labels, self.n_rays) / MAX_RAY_PX, 0.0, 1.0)
        return _stacked_like(mask, array, probability, *np.moveaxis(rays, -1, 0))


class LineWeightAndStarPolygonsd(_LineWeightAndTargetd):
    """Append the loss weights around the separation lines and the star-convex polygon targets
    (:class:`StarPolygons`) to the masks under ``keys``: (4 + rays, H, W) labels for :class:`StarPolygonLoss`."""

    target = StarPolygons


class StarPolygonLoss(WeightedMaskAndSeparationLoss):
    """The bundle's line-weighted Dice and cross-entropy on the particle mask, cross-entropy of the object
    probability, and the mean absolute error of the rays in pixels (each ray :data:`MAX_RAY_PX` times the
    sigmoid of its logit) weighted by the true object probability and normalised by its sum, so that a
    particle's centre counts most and the background not at all, as in StarDist.

    Args:
        cross_entropy_weight: weight of the mask's weighted cross-entropy term.
        object_weight: weight of the object-probability term.
        ray_weight: weight of the ray term per pixel of ray error (StarDist's: :data:`STARDIST_RAY_WEIGHT`).
    """

    def __init__(
        self, cross_entropy_weight: float = 1.0, object_weight: float = 1.0, ray_weight: float = STARDIST_RAY_WEIGHT
    ) -> None:
        super().__init__(cross_entropy_weight, separation_weight=1.0)
        if object_weight < 0 or ray_weight < 0:
            raise ValueError(f"object_weight and ray_weight must be >= 0, got {object_weight} and {ray_weight}.")
        self.object_weight = object_weight
        self.ray_weight = ray_weight

    def separation_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Object-probability cross-entropy plus probability-weighted ray error in pixels."""
        first_ray = 1 + POLYGON_CHANNELS_BEFORE_RAYS
        target_object = target[:, self.mask_target_channels : self.mask_target_channels + 1]
        target_rays = target[:, self.mask_target_channels + POLYGON_CHANNELS_BEFORE_RAYS :]
        object_loss = self.cross_entropy(logits[:, 1:first_ray], target_object)
        ray_error_px = MAX_RAY_PX * (torch.sigmoid(logits[:, first_ray:]) - target_rays).abs().mean(dim=1, keepdim=True)
        weight_sum = target_object.sum().clamp_min(torch.finfo(ray_error_px.dtype).eps)
        ray_loss = (target_object * ray_error_px).sum() / weight_sum
        return self.object_weight * object_loss + self.ray_weight * ray_loss


def star_polygon_particles(
    probability: np.ndarray,
    separation: np.ndarray,
    object_threshold: float = DEFAULT_OBJECT_THRESHOLD,
    overlap_threshold: float = DEFAULT_OVERLAP_THRESHOLD,
    min_size_px: int = DEFAULT_MIN_SIZE_PX,
    within_mask: bool = False,
) -> np.ndarray:
    """Particle labels (H, W) from a network's star-polygon outputs: ``separation`` (1 + rays, H, W) holds the
    object probability and the ray lengths over :data:`MAX_RAY_PX` (both after the sigmoid). The polygons of
    pixels above ``object_threshold`` go through stardist's non-maximum suppression at ``overlap_threshold``
    and are drawn, the more probable on top; particles under ``min_size_px`` are dropped.

    By default the polygons draw the particles' outlines and ``probability`` (the mask channel) is not used.
    ``within_mask`` takes the outlines from the mask instead: the polygons inside the mask (``probability``
    above :data:`~rformer_monai.metrics.segmentation.DEFAULT_THRESHOLD`) are grown over it by a watershed of
    the probability, so that touching particles part along its valleys, and mask particles that hold no
    polygon are kept as they are."""
    separation = np.asarray(separation, dtype=np.float32)
    if separation.ndim != 3 or separation.shape[0] <= POLYGON_CHANNELS_BEFORE_RAYS + 2:
        raise ValueError(f"separation must be (1 + rays, H, W) with at least 3 rays, got shape {separation.shape}.")
    if separation.shape[1:] != np.shape(probability):
        raise ValueError(f"separation {separation.shape} and probability {np.shape(probability)} differ in size.")
    object_probability = separation[0]
    rays = np.ascontiguousarray(np.moveaxis(separation[POLYGON_CHANNELS_BEFORE_RAYS:], 0, -1) * MAX_RAY_PX)
    points, scores, distances = non_maximum_suppression(
        rays, object_probability, nms_thresh=overlap_threshold, prob_thresh=object_threshold
    )
    labels = polygons_to_label(distances, points, object_probability.shape, prob=scores).astype(np.int32)
    if within_mask:
        labels = _grown_over_mask(np.asarray(probability, dtype=np.float32), labels)
    areas = np.bincount(labels.ravel())
    too_small = areas < min_size_px
    too_small[0] = False
    labels[too_small[labels]] = 0  # touching polygons keep their own labels: no relabelling by connectivity
    return relabel_sequential(labels)[0]


def _grown_over_mask(probability: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """The mask (``probability`` above the threshold) split among the ``polygons`` inside it by a watershed of
    the probability; mask particles without a polygon keep their own label."""
    mask = probability > DEFAULT_THRESHOLD
    labels = watershed(-probability, np.where(mask, polygons, 0), mask=mask, connectivity=1)
    orphans = label_particles(mask & (labels == 0))
    return np.where(orphans > 0, orphans + labels.max(), labels).astype(np.int32)
