"""Sliding-window inference speed and memory of the cross-validated networks: ResidualFormer's decoder layouts
against MONAI BasicUNet and SegResNet.

    python benchmarks/inference_speed.py [--quick] [--skip_8192] [--repeats 3] [--models bundle segresnet ...]
        [--threads N] [--sw_batch_size 4] [--tta] [--devices cpu cuda]
        [--cuda_precision bf16] [--channels_last] [--compile] [--keep_freed_buffers]

Every model is the bundle's inference.json network with its override (``configs/`` or ``research/configs/``) merged on, as in the
cross-validation, and runs in the same run on the same synthetic micrograph, with the bundle's sliding window
(256 x 256, overlap 0.25, Gaussian blending), on a 1024 x 768 micrograph and an 8192 x 8192 one. Each case runs
in a fresh process, so that its peak memory is its own: resident memory (VmHWM) on CPU,
``torch.cuda.max_memory_allocated`` on CUDA. Prints a markdown table: seconds per image, megapixels per second, ms per
256 x 256 window (the whole inference divided by the number of windows, stitching included), peak memory.

``--quick`` measures the 1024 x 768 case once and *estimates* the 8192 x 8192 case on CPU from it: time = the
measured time per window x the number of windows, memory = the measured peak + 12 bytes per extra pixel (the
float32 input, stitched output and weight sum). Estimated rows say so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from rformer_monai.inference.memory import peak_resident_bytes

REPOSITORY = Path(__file__).resolve().parents[1]

ROI_SIZE = (256, 256)
OVERLAP = 0.25
MODE = "gaussian"
SMALL_IMAGE = (768, 1024)  # H x W: a 1024 x 768 SEM micrograph
LARGE_IMAGE = (8192, 8192)
STITCH_BYTES_PER_PIXEL = 12  # float32 input, stitched output and weight sum
MODELS = {  # name: (label, the override merged onto inference.json, from the repository root)
    "bundle": ("ResidualFormer, the bundle's layout (decoder 32, fusion 1)", None),
    "decoder64": ("ResidualFormer, decoder 64, fusion 1", "research/configs/decoder64_full_resolution.json"),
    "decoder256_quarter": ("ResidualFormer, decoder 256, fusion 1/4", "research/configs/decoder256_quarter_resolution.json"),
    "paper": ("ResidualFormer, paper layout (decoder 256, fusion 1)", "configs/residualformer_paper.json"),
    "cheap": ("ResidualFormer, decoder 64, fusion 1/4 (the bundle before 0.4.0)", "research/configs/decoder64_quarter_resolution.json"),
    "basicunet": ("MONAI BasicUNet", "configs/basicunet.json"),
    "segresnet": ("MONAI SegResNet (16 filters)", "configs/segresnet.json"),
}
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
TABLE_HEADER = (
    "| device | model | params (M) | GMACs / window | image (W x H) | s / image | MP/s | ms / window "
    "| peak memory (GB) | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def build_model(name: str) -> torch.nn.Module:
    """The ``network_def`` of the bundle's inference.json with the model's override merged on, seeded, in eval mode."""
    from research.cv import inference_config

    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}.")
    override = MODELS[name][1]
    torch.manual_seed(0)
    network = inference_config([REPOSITORY / override] if override else []).get_parsed_content("network_def")
    return network.eval()


def window_count(shape: tuple[int, int]) -> int:
    """Windows MONAI's sliding window places on an image of ``shape``."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    interval = _get_scan_interval(shape, ROI_SIZE, len(shape), (OVERLAP,) * len(shape))
    return len(dense_patch_slices(shape, ROI_SIZE, interval))


# ------------------------------------------------------------------ one case, in its own process
def run_case(case: dict) -> dict:
    """Time sliding-window inference of one model on one image; returns seconds, windows and peak memory."""
    from monai.inferers import SlidingWindowInferer

    from rformer_monai.inference import DihedralTTA
    from rformer_monai.workflows import keep_freed_buffers

    if case["keep_freed_buffers"]:
        keep_freed_buffers()
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    cuda = device.type == "cuda"
    network = build_model(case["model"]).to(device)
    memory_format = torch.channels_last if case["channels_last"] else torch.contiguous_format
    network = network.to(memory_format=memory_format)
    if case["tta"]:
        network = DihedralTTA(network)
    if case["compile"]:
        network = torch.compile(network)
    inferer = SlidingWindowInferer(ROI_SIZE, sw_batch_size=case["sw_batch_size"], overlap=OVERLAP, mode=MODE)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 1, *case["shape"], generator=generator).to(device)
    precision = PRECISIONS[case["precision"]] if cuda else None

    def infer() -> None:
        autocast = torch.autocast(device.type, dtype=precision, enabled=precision is not None)
        with torch.inference_mode(), autocast:
            inferer(image, network)
        if cuda:
            torch.cuda.synchronize(device)

    warm_up = torch.randn(case["sw_batch_size"], 1, *ROI_SIZE, generator=generator)
    warm_up = warm_up.to(device, memory_format=memory_format)
    with torch.inference_mode(), torch.autocast(device.type, dtype=precision, enabled=precision is not None):
        network(warm_up)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        infer()
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if cuda else peak_resident_bytes()
    return {"seconds": statistics.median(seconds), "windows": window_count(case["shape"]), "peak_bytes": peak}


def run_in_subprocess(case: dict) -> dict:
    """:func:`run_case` in a fresh Python process (its own peak memory)."""
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--case", json.dumps(case)],
        capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the table
def _machine(devices: list[str], threads: int | None) -> str:
    lines = [
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{threads or torch.get_num_threads()} torch threads",
    ]
    if hasattr(os, "getloadavg"):
        lines.append("load average before the run: " + ", ".join(f"{value:.1f}" for value in os.getloadavg()))
    if "cuda" in devices:
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    return "\n".join(f"- {line}" for line in lines)


def _row(
    device: str, model: str, shape, result: dict, note: str, macs: dict, parameters: dict, tta: bool = False
) -> str:
    megapixels = shape[0] * shape[1] / 1e6
    label = MODELS[model][0] + (" + 8-fold TTA" if tta else "")
    return (
        f"| {device} | {label} | {parameters[model] / 1e6:.2f} | "
        f"{macs[model] / 1e9:.1f} | {shape[1]} x {shape[0]} | {result['seconds']:.3g} | "
        f"{megapixels / result['seconds']:.3g} | "
        f"{1000 * result['seconds'] / result['windows']:.0f} | {result['peak_bytes'] / 1e9:.2f} | {note} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case and print JSON
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], help="default cpu, and cuda when present")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (the median is reported)")
    parser.add_argument("--skip_8192", action="store_true", help="only the 1024 x 768 micrograph")
    parser.add_argument("--quick", action="store_true", help="one run; estimate the 8192 x 8192 case on CPU")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default torch's choice)")
    parser.add_argument("--sw_batch_size", type=int, default=4, help="windows per forward pass (the bundle's 4)")
    parser.add_argument("--tta", action="store_true", help="also time 8-fold test-time augmentation (1024 x 768)")
    parser.add_argument("--cuda_precision", choices=sorted(PRECISIONS), default="bf16", help="autocast on CUDA")
    parser.add_argument("--channels_last", action="store_true", help="channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument(
        "--keep_freed_buffers", action="store_true", help="call rformer_monai.workflows.keep_freed_buffers, as inference.json does"
    )
    arguments = parser.parse_args(argv)
    if arguments.case:
        print(json.dumps(run_case(json.loads(arguments.case))))
        return 0

    from rformer_monai.networks import count_macs, count_parameters

    devices = arguments.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no CUDA device")
    repeats = 1 if arguments.quick else arguments.repeats
    macs = {name: count_macs(build_model(name), (1, 1, *ROI_SIZE)) for name in arguments.models}
    parameters = {name: count_parameters(build_model(name)) for name in arguments.models}
    print(f"# Sliding-window inference: {ROI_SIZE[0]} x {ROI_SIZE[1]} windows, overlap {OVERLAP}, {MODE} blending, "
          f"sw_batch_size {arguments.sw_batch_size}\n\n{_machine(devices, arguments.threads)}\n")
    print(TABLE_HEADER)
    for device in devices:
        cuda = device == "cuda"
        flags = [arguments.cuda_precision if cuda else "fp32"]
        flags += ["channels_last"] * arguments.channels_last + ["compiled"] * arguments.compile
        base = {
            "device": device, "threads": arguments.threads, "sw_batch_size": arguments.sw_batch_size,
            "precision": arguments.cuda_precision, "channels_last": arguments.channels_last,
            "compile": arguments.compile, "repeats": repeats, "tta": False,
            "keep_freed_buffers": arguments.keep_freed_buffers,
        }
        for model in arguments.models:
            small = run_in_subprocess({**base, "model": model, "shape": SMALL_IMAGE})
            note = f"measured, {', '.join(flags)}, median of {repeats}"
            print(_row(device, model, SMALL_IMAGE, small, note, macs, parameters), flush=True)
            if arguments.tta:
                tta = run_in_subprocess({**base, "model": model, "shape": SMALL_IMAGE, "tta": True})
                factor = tta["seconds"] / small["seconds"]
                note = f"measured, {factor:.1f}x the time without TTA"
                print(_row(device, model, SMALL_IMAGE, tta, note, macs, parameters, tta=True), flush=True)
            if arguments.skip_8192:
                continue
            if arguments.quick and not cuda:
                windows = window_count(LARGE_IMAGE)
                pixels = LARGE_IMAGE[0] * LARGE_IMAGE[1] - SMALL_IMAGE[0] * SMALL_IMAGE[1]
                large = {
                    "seconds": small["seconds"] / small["windows"] * windows,
                    "windows": windows,
                    "peak_bytes": small["peak_bytes"] + STITCH_BYTES_PER_PIXEL * pixels,
                }
                note = "**estimated** (--quick) from the 1024 x 768 run"
            else:
                large = run_in_subprocess({**base, "model": model, "shape": LARGE_IMAGE})
                note = f"measured, {', '.join(flags)}, median of {repeats}"
            print(_row(device, model, LARGE_IMAGE, large, note, macs, parameters), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
