"""rformer_monai: ResidualFormer nanoparticle segmentation and particle measurement, the MONAI way."""

from rformer_monai import data, engines, metrics, networks, transforms

__version__ = "0.1.0"

__all__ = ["data", "engines", "metrics", "networks", "transforms", "__version__"]
