"""rformer_monai: ResidualFormer nanoparticle segmentation and particle measurement, the MONAI way."""

from rformer_monai import (
    analysis,
    data,
    engines,
    inference,
    metrics,
    networks,
    transforms,
)

__version__ = "0.6.6"

__all__ = ["analysis", "data", "engines", "inference", "metrics", "networks", "transforms", "__version__"]
