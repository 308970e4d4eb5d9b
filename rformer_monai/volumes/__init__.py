"""3-D stacks (FIB-SEM serial sections, electron tomograms): reading with voxel spacing, slice-by-slice
segmentation with the bundle's 2-D network, 3-D particles (slab by slab and cluster by cluster, with bounded
memory) and their measurements in nm (docs/volumes.md).

ITK is imported only when an MHA or NRRD file is opened; nothing here needs it otherwise.
"""

from rformer_monai.volumes.clusters import StackParticles, find_clusters, label_instances_3d, particles_in_slabs
from rformer_monai.volumes.instances import (
    DEFAULT_MARKER_HEIGHT_VOXELS,
    DEFAULT_MIN_SIZE_VOXELS,
    particle_mask,
    separate_mask_3d,
)
from rformer_monai.volumes.io import STACK_SUFFIXES, StackReadError, VolumeSource, find_stacks, open_stack, stack_stem
from rformer_monai.volumes.measurement import (
    PARTICLE_COLUMNS_3D,
    equivalent_sphere_diameter,
    measure_particles_3d,
    surface_area,
)
from rformer_monai.volumes.outputs import STACK_OUTPUT_SUFFIXES, SlabbedVolume, write_labels_nifti, write_labels_tiff
from rformer_monai.volumes.segment import predict_stack_probability, segment_stack, segment_stacks
from rformer_monai.volumes.synthetic import SyntheticVolume, make_synthetic_stacks, make_synthetic_volume

__all__ = [
    "DEFAULT_MARKER_HEIGHT_VOXELS",
    "DEFAULT_MIN_SIZE_VOXELS",
    "PARTICLE_COLUMNS_3D",
    "STACK_OUTPUT_SUFFIXES",
    "STACK_SUFFIXES",
    "SlabbedVolume",
    "StackParticles",
    "StackReadError",
    "SyntheticVolume",
    "VolumeSource",
    "equivalent_sphere_diameter",
    "find_clusters",
    "find_stacks",
    "label_instances_3d",
    "make_synthetic_stacks",
    "make_synthetic_volume",
    "measure_particles_3d",
    "open_stack",
    "particle_mask",
    "particles_in_slabs",
    "predict_stack_probability",
    "segment_stack",
    "segment_stacks",
    "separate_mask_3d",
    "stack_stem",
    "surface_area",
    "write_labels_nifti",
    "write_labels_tiff",
]
