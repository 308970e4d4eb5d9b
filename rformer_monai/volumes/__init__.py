"""3-D stacks (FIB-SEM serial sections, electron tomograms): reading with voxel spacing, slice-by-slice
segmentation with the bundle's 2-D network, 3-D particles and their measurements in nm (docs/volumes.md).

ITK is imported only when an MHA or NRRD file is opened; nothing here needs it otherwise.
"""

from rformer_monai.volumes.instances import (
    DEFAULT_MARKER_HEIGHT_VOXELS,
    DEFAULT_MIN_SIZE_VOXELS,
    label_instances_3d,
    particle_mask,
)
from rformer_monai.volumes.io import STACK_SUFFIXES, StackReadError, VolumeSource, find_stacks, open_stack, stack_stem
from rformer_monai.volumes.measurement import (
    PARTICLE_COLUMNS_3D,
    equivalent_sphere_diameter,
    measure_particles_3d,
    surface_area,
)
from rformer_monai.volumes.outputs import STACK_OUTPUT_SUFFIXES, write_labels_nifti, write_labels_tiff
from rformer_monai.volumes.segment import predict_stack_probability, segment_stack, segment_stacks
from rformer_monai.volumes.synthetic import SyntheticVolume, make_synthetic_stacks, make_synthetic_volume

__all__ = [
    "DEFAULT_MARKER_HEIGHT_VOXELS",
    "DEFAULT_MIN_SIZE_VOXELS",
    "PARTICLE_COLUMNS_3D",
    "STACK_OUTPUT_SUFFIXES",
    "STACK_SUFFIXES",
    "StackReadError",
    "SyntheticVolume",
    "VolumeSource",
    "equivalent_sphere_diameter",
    "find_stacks",
    "label_instances_3d",
    "make_synthetic_stacks",
    "make_synthetic_volume",
    "measure_particles_3d",
    "open_stack",
    "particle_mask",
    "predict_stack_probability",
    "segment_stack",
    "segment_stacks",
    "stack_stem",
    "surface_area",
    "write_labels_nifti",
    "write_labels_tiff",
]
