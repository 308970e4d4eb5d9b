"""CPU inference speed of the ResidualFormer on onnxruntime against PyTorch, as the bundle's inference runs it:
one 1024x768 micrograph, sliding window 256x256, overlap 0.25, gaussian blending, 4 windows per forward pass.

    python benchmarks/onnx_vs_torch.py [--repeats 3] [--threads N] [--variants paper cheap]

Weights are random (speed does not depend on them); both runtimes get the same number of threads. Prints the
median wall time per micrograph of each runtime, the speed-up, and the largest probability difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from monai.inferers import SlidingWindowInferer

from rformer_monai.networks import ResidualFormer
from rformer_monai.sharing import OnnxRuntimeNetwork, export_onnx

MICROGRAPH_SHAPE = (1, 1, 768, 1024)  # batch, channel, height, width of a 1024x768 SEM micrograph
ROI_SIZE = (256, 256)
SW_BATCH_SIZE = 4
OVERLAP = 0.25
VARIANTS = {
    "paper": {"decoder_channels": 256, "fusion_stride": 1},
    "cheap": {"decoder_channels": 64, "fusion_stride": 4},
}


def _time(network: torch.nn.Module, inferer: SlidingWindowInferer, image: torch.Tensor, repeats: int):
    with torch.no_grad():
        inferer(image[..., : ROI_SIZE[0], : ROI_SIZE[1]], network)  # warm-up on one window
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            logits = inferer(image, network)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), torch.sigmoid(logits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per runtime (the median is printed)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads for both runtimes")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    arguments = parser.parse_args()

    torch.set_num_threads(arguments.threads)
    image = torch.randn(*MICROGRAPH_SHAPE, generator=torch.Generator().manual_seed(0))
    inferer = SlidingWindowInferer(ROI_SIZE, sw_batch_size=SW_BATCH_SIZE, overlap=OVERLAP, mode="gaussian")
    height, width = MICROGRAPH_SHAPE[2:]
    print(f"torch {torch.__version__}, {arguments.threads} threads, micrograph {width}x{height}, "
          f"window {ROI_SIZE[0]}, overlap {OVERLAP}, gaussian, median of {arguments.repeats}")
    print(f"{'variant':<8} {'pytorch s':>10} {'onnxruntime s':>14} {'speed-up':>9} {'max |dp|':>10}")
    with tempfile.TemporaryDirectory() as workspace:
        for name in arguments.variants:
            torch.manual_seed(0)
            network = ResidualFormer(**VARIANTS[name]).eval()
            onnx_path = export_onnx(network, Path(workspace) / f"{name}.onnx")
            onnx_network = OnnxRuntimeNetwork(onnx_path, intra_op_num_threads=arguments.threads)
            torch_seconds, torch_probability = _time(network, inferer, image, arguments.repeats)
            onnx_seconds, onnx_probability = _time(onnx_network, inferer, image, arguments.repeats)
            difference = float((torch_probability - onnx_probability).abs().max())
            print(f"{name:<8} {torch_seconds:>10.2f} {onnx_seconds:>14.2f} {torch_seconds / onnx_seconds:>8.2f}x "
                  f"{difference:>10.1e}")


if __name__ == "__main__":
    main()
