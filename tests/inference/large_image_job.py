"""Segment one large micrograph in blocks and print the run's peak resident memory and time as JSON.

    python large_image_job.py IMAGE OUTPUT_DIR BLOCK_SIZE

Run in a fresh process by the slow test, so that the peak memory is this run's alone. The network is one 1x1
convolution with weight 1 and bias 0 on z-scored blocks (the mask is then exactly "brighter than the image
mean"): the memory measured is that of block streaming, which does not depend on the network.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from monai.inferers import SlidingWindowInferer
from torch import nn

from rformer_monai.inference import segment_large_micrograph
from rformer_monai.inference.memory import peak_resident_bytes


def main(image: str, output_dir: str, block_size: str) -> None:
    torch.set_num_threads(1)
    network = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        network.weight.fill_(1.0)
        network.bias.zero_()
    inferer = SlidingWindowInferer((256, 256), sw_batch_size=4, overlap=0.25, mode="gaussian")
    start = time.perf_counter()
    segment_large_micrograph(
        image, output_dir, network, inferer, block_size=int(block_size), intensity="zscore", progress=False
    )
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_bytes": peak_resident_bytes()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
