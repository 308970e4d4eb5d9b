"""Networks: the ResidualFormer segmentation model, its parts, complexity counters and weight loading."""

from rformer_monai.networks.blocks import ResidualBlock
from rformer_monai.networks.complexity import count_macs, count_parameters
from rformer_monai.networks.decoder import SegFormerDecoder
from rformer_monai.networks.encoder import ResidualEncoder
from rformer_monai.networks.residualformer import ResidualFormer
from rformer_monai.networks.weights import CheckpointError, load_weights, read_checkpoint

__all__ = [
    "CheckpointError",
    "ResidualBlock",
    "ResidualEncoder",
    "ResidualFormer",
    "SegFormerDecoder",
    "count_macs",
    "count_parameters",
    "load_weights",
    "read_checkpoint",
]
