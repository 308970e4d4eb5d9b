"""Particles: the BAM particle convention, separation of a mask into single particles, their measurements in
nm and their size distribution."""

from rformer_monai.particles.imagej import PARTICLE_TABLE_COLUMNS, PixelSize, particle_table
from rformer_monai.particles.labelling import (
    FOUR_CONNECTED,
    equivalent_circular_diameter,
    label_particles,
    remove_small_particles,
    separated_foreground,
)
from rformer_monai.particles.measurement import (
    PARTICLE_COLUMNS,
    SIZE_STATISTICS,
    SUMMARY_KEYS,
    column_unit,
    measure_particles,
    size_statistics,
    summarize_particles,
)
from rformer_monai.particles.separation import (
    DEFAULT_MARKER_HEIGHT_PX,
    DEFAULT_MARKER_RISE,
    DEFAULT_MIN_MARKER_DISTANCE_PX,
    DEFAULT_MIN_SIZE_PX,
    DEFAULT_PARTICLE_THRESHOLD,
    DEFAULT_SMOOTHING_SIGMA_PX,
    DEFAULT_VALLEY_GAIN,
    cut_along_separation,
    deepen_valleys,
    particle_step_maps,
    separate_particles,
    separation_map,
)

__all__ = [
    "PARTICLE_TABLE_COLUMNS",
    "PixelSize",
    "particle_table",
    "DEFAULT_MARKER_HEIGHT_PX",
    "DEFAULT_MARKER_RISE",
    "DEFAULT_MIN_MARKER_DISTANCE_PX",
    "DEFAULT_MIN_SIZE_PX",
    "DEFAULT_PARTICLE_THRESHOLD",
    "DEFAULT_SMOOTHING_SIGMA_PX",
    "DEFAULT_VALLEY_GAIN",
    "FOUR_CONNECTED",
    "PARTICLE_COLUMNS",
    "SIZE_STATISTICS",
    "SUMMARY_KEYS",
    "column_unit",
    "cut_along_separation",
    "deepen_valleys",
    "equivalent_circular_diameter",
    "label_particles",
    "measure_particles",
    "particle_step_maps",
    "remove_small_particles",
    "separate_particles",
    "separated_foreground",
    "separation_map",
    "size_statistics",
    "summarize_particles",
]
