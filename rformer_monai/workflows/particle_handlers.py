"""Instance-level evaluation inside the bundle's evaluation: an ignite handler that splits every predicted mask
into particles and matches them to the true ones."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from rformer_monai.metrics.instances import (
    DEFAULT_IOU_THRESHOLD,
    InstanceMatches,
    match_instances,
    pool_matches,
    recall_by_size,
    scores_from_matches,
)
from rformer_monai.metrics.segmentation import DEFAULT_THRESHOLD
from rformer_monai.particles.labelling import label_particles, remove_small_particles
from rformer_monai.particles.separation import (
    DEFAULT_MIN_SIZE_PX,
    DEFAULT_VALLEY_GAIN,
    particle_step_maps,
    separate_particles,
    separation_map,
)
from rformer_monai.transforms.dictionary import SEPARATION_POSTFIX
from rformer_monai.transforms.io import pixel_size_from_meta

logger = logging.getLogger(__name__)

INSTANCE_METRICS_NAME = "instance_metrics.json"
PERCENT = 100.0
SEPARATION_KEY = f"pred{SEPARATION_POSTFIX}"  # where rformer_monai.transforms.SplitSeparationd puts a separation output


SeparationMap = Callable[[np.ndarray], np.ndarray]
"""Turns a network's separation outputs (C, H, W) into the (H, W) map the particle step cuts along."""
ParticleStep = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Turns a network's particle probability (H, W) and separation outputs (C, H, W) into particle labels (H, W),
in place of the bundle's watershed (e.g. ``research.star_polygons.star_polygon_particles``)."""


def _probabilities(
    sample: dict[str, Any], pred_key: str, separation_key: str, valley_gain: float, to_map: SeparationMap
) -> tuple[np.ndarray, np.ndarray | None]:
    """A sample's (H, W) particle probability and separation output (where the network has one, as its map
    ``to_map``) as the particle step's maps (:func:`particle_step_maps`)."""
    separation = sample.get(separation_key)
    return particle_step_maps(
        sample[pred_key].detach().cpu().float().numpy()[0],
        None if separation is None else to_map(separation.detach().cpu().float().numpy()),
        valley_gain,
    )


class InstanceEvaluationHandler:
    """Instance-level evaluation inside the bundle's evaluation: per image, the predicted mask is split into
    particles (:func:`separate_particles`) and matched to the true particles (the 4-connected components of
    the ground-truth mask) at IoU > ``iou_threshold``; on completion ``instance_metrics.json`` holds the
    per-image and pooled F1, precision, recall, panoptic quality, mean per-particle IoU, relative errors
    of the particle count and of the median ECD, and the Kolmogorov-Smirnov distance of the ECDs. Under
    ``measurable`` it holds the pooled scores once more against the true particles of at least the particle
    step's smallest size (``min_size_px`` of ``separation``): the masks' one-pixel lines leave slivers of a
    few pixels that count as particles of the truth but that no prediction keeps.

    Expects per-sample dicts in ``engine.state.output`` with ``pred`` (probabilities) and ``label``
    (binary), (1, H, W), cropped to the sample area (data bar excluded) as the evaluation sees them.

    Args:
        output_dir: folder of ``instance_metrics.json``.
        threshold: probability above which a pixel is particle.
        iou_threshold: IoU above which a predicted and a true particle match.
        separation: keyword arguments of :func:`separate_particles`.
        separation_key: key of the separation-band probability of a network that has one; where a sample
            holds it, the watershed cuts along it.
        valley_gain: how strongly thin valleys of the probability are deepened before the threshold
            (:func:`rformer_monai.particles.deepen_valleys`; 0 leaves the probability as it is).
        separation_map: turns the separation outputs (C, H, W) into the (H, W) map the particle step cuts
            along; the default takes the bundle's one distance-map channel as it is.
        particle_step: where given, turns the probability and the separation outputs into the predicted
            particles in place of the threshold and watershed (``threshold``, ``separation``, ``valley_gain`` and
            ``separation_map`` then unused).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        threshold: float = DEFAULT_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        separation: dict[str, Any] | None = None,
        separation_key: str = SEPARATION_KEY,
        valley_gain: float = DEFAULT_VALLEY_GAIN,
        separation_map: SeparationMap = separation_map,
        particle_step: ParticleStep | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.iou_threshold = iou_threshold
        self.separation = dict(separation or {})
        self.separation_key = separation_key
        self.valley_gain = valley_gain
        self.separation_map = separation_map
        self.particle_step = particle_step
        self.per_image: list[dict[str, Any]] = []
        self.matches: list[InstanceMatches] = []
        self.measurable_matches: list[InstanceMatches] = []
        self.ecd_units: set[str] = set()
        self.min_size_px = int(self.separation.get("min_size_px", DEFAULT_MIN_SIZE_PX))

    def attach(self, engine: Engine) -> None:
        """Attach to an evaluator."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._match)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.per_image, self.matches, self.measurable_matches, self.ecd_units = [], [], [], set()

    def _match(self, engine: Engine) -> None:
        for sample in engine.state.output:
            prediction = sample["pred"]
            truth = sample["label"].detach().cpu().numpy()[0] > 0
            pixel_size_nm = pixel_size_from_meta(prediction.meta) if isinstance(prediction, MetaTensor) else None
            predicted = self.particles(sample)
            true_labels = label_particles(truth)
            matches = match_instances(predicted, true_labels, self.iou_threshold, pixel_size_nm=pixel_size_nm)
            measurable = remove_small_particles(true_labels, self.min_size_px)
            name = Path(str(prediction.meta.get("filename_or_obj", len(self.per_image)))).stem
            self.matches.append(matches)
            self.measurable_matches.append(
                match_instances(predicted, measurable, self.iou_threshold, pixel_size_nm=pixel_size_nm)
            )
            self.ecd_units.add("px" if pixel_size_nm is None else "nm")
            self.per_image.append({"name": name, **scores_from_matches(matches)})

    def particles(self, sample: dict[str, Any]) -> np.ndarray:
        """The predicted particles (H, W) of a sample: by :attr:`particle_step` where set, else thresholded and
        split by the bundle's watershed."""
        if self.particle_step is not None:
            separation = sample.get(self.separation_key)
            if separation is None:
                raise ValueError(f"particle_step needs the network's separation outputs under {self.separation_key!r}.")
            return self.particle_step(
                sample["pred"].detach().cpu().float().numpy()[0], separation.detach().cpu().float().numpy()
            )
        probability, cut = _probabilities(sample, "pred", self.separation_key, self.valley_gain, self.separation_map)
        return separate_particles(probability > self.threshold, probability=cut, **self.separation)

    def _write(self, engine: Engine) -> None:
        if not self.per_image:
            return
        pooled_matches = pool_matches(self.matches)
        pooled = scores_from_matches(pooled_matches)
        measurable = scores_from_matches(pool_matches(self.measurable_matches))
        report = {"iou_threshold": self.iou_threshold, "separation": self.separation,
                  "valley_gain": self.valley_gain, "pooled": pooled,
                  "recall_by_size": recall_by_size(pooled_matches), "ecd_unit": "/".join(sorted(self.ecd_units)),
                  "measurable": {"min_size_px": self.min_size_px, "pooled": measurable},
                  "per_image": self.per_image}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / INSTANCE_METRICS_NAME).write_text(json.dumps(report, indent=2, default=float))
        logger.info(
            "instances: F1 %.4f, PQ %.4f, count error %+.1f%% over %d images; of %d missed particles %d merged "
            "with a neighbour, %d not segmented",
            pooled["f1"], pooled["pq"], PERCENT * pooled["count_error"], len(self.per_image),
            pooled["fn"], pooled["fn_merged"], pooled["fn_unsegmented"],
        )
        logger.info(
            "instances of at least %d px (%d of %d true ones): F1 %.4f, PQ %.4f, count error %+.1f%%",
            self.min_size_px, measurable["true_count"], pooled["true_count"], measurable["f1"], measurable["pq"],
            PERCENT * measurable["count_error"],
        )
        logger.info(
            "recall by particle size, smallest quarter first: %s",
            ", ".join(f"{row['recall']:.2f}" for row in report["recall_by_size"]),
        )
