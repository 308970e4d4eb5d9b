"""Networks: the ResidualFormer segmentation model, its parts, and complexity counters."""

from rformer_monai.networks.blocks import ResidualBlock
from rformer_monai.networks.complexity import count_macs, count_parameters
from rformer_monai.networks.decoder import SegFormerDecoder
from rformer_monai.networks.encoder import ResidualEncoder
from rformer_monai.networks.residualformer import ResidualFormer
from rformer_monai.networks.upsampled import UpsampledInput

__all__ = [
    "ResidualBlock",
    "ResidualEncoder",
    "SegFormerDecoder",
    "ResidualFormer",
    "UpsampledInput",
    "count_macs",
    "count_parameters",
]
