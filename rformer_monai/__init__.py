"""rformer_monai: ResidualFormer nanoparticle segmentation and particle measurement, the MONAI way."""

from rformer_monai import (
    data,
    inference,
    metrics,
    networks,
    particles,
    reports,
    transforms,
    workflows,
)

__version__ = "0.7.0"

__all__ = ["data", "inference", "metrics", "networks", "particles", "reports", "transforms", "workflows", "__version__"]
