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

__version__ = "0.8.2"

from rformer_monai.api import Segmentation, segment  # noqa: E402  (after the subpackages it builds on)

__all__ = ["data", "inference", "metrics", "networks", "particles", "reports", "transforms", "workflows", "segment", "Segmentation", "__version__"]
