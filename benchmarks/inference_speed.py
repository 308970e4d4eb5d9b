"""Sliding-window inference speed and memory of the cross-validated networks: ResidualFormer's decoder layouts
against MONAI BasicUNet and SegResNet.

    python benchmarks/inference_speed.py [--quick] [--skip_8192] [--repeats 3] [--models bundle segresnet ...]
        [--threads N] [--sw_batch_size 4] [--tta] [--devices cpu cuda]
        [--cuda_precision bf16] [--channels_last] [--compile] [--keep_freed_buffers]
    python benchmarks/inference_speed.py --roi 256 512 whole --overlap 0.25 0.125 0 [--models bundle] [--repeats 5]
        [--image 712 1024] [--sw_batch_size 4]

Every model is the bundle's inference.json network with its override (``configs/`` or ``research/configs/``) merged on, as in the
cross-validation, and runs in the same run on the same synthetic micrograph, with the bundle's sliding window
(256 x 256, overlap 0.25, Gaussian blending), on a 1024 x 768 micrograph and an 8192 x 8192 one. Each case runs
in a fresh process, so that its peak memory is its own: resident memory (VmHWM) on CPU,
``torch.cuda.max_memory_allocated`` on CUDA. Prints a markdown table: seconds per image, megapixels per second, ms per
256 x 256 window (the whole inference divided by the number of windows, stitching included), peak memory.

``--roi`` (square window sides, ``HxW``, or ``whole``: one window the size of the image) with ``--overlap`` times the
networks of ``--models`` (default the bundle's) under those window settings and ``--sw_batch_size`` against
BasicUNet at the bundle's 256 x 256 / 0.25 / 4 windows per batch on the 1024 x 768 micrograph (``--image 712
1024``: the frame with its data bar cut, as the bundle infers it), all in one process: each timed run of a setting is followed at once
by a timed run of BasicUNet, so that both meet the same load, and the ratio reported is the median of those pairs'
ratios; the last column compares the fastest runs (the least disturbed). Load from other jobs still slows many
small windows more than one large one: compare on a quiet machine. Settings that place the same windows (an
overlap once one window covers a side) are timed once.
A second table splits one forward pass of each ResidualFormer into encoder and decoder, on a batch of windows and
on the whole image.

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
WHOLE = "whole"  # --roi: one window the size of the image
BASELINE_MODEL = "basicunet"  # --roi compares against this network at ROI_SIZE / OVERLAP, BASELINE_SW_BATCH_SIZE
BASELINE_SW_BATCH_SIZE = 4  # the bundle's
DEFAULT_THREADS = 2  # as the README's timings (rformer-infer --threads 2)
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
MONAI_MODELS = ("basicunet", "segresnet")  # no encoder / decoder split
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


def window_slices(shape: tuple[int, int], roi_size=ROI_SIZE, overlap: float = OVERLAP) -> list:
    """The windows MONAI's sliding window places on an image of ``shape`` (padded first to at least ``roi_size``)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = tuple(max(side, roi) for side, roi in zip(shape, roi_size))
    interval = _get_scan_interval(padded, roi_size, len(shape), (overlap,) * len(shape))
    return dense_patch_slices(padded, roi_size, interval)


def window_count(shape: tuple[int, int], roi_size=ROI_SIZE, overlap: float = OVERLAP) -> int:
    """Windows MONAI's sliding window places on an image of ``shape``."""
    return len(window_slices(shape, roi_size, overlap))


def window_settings(
    shape: tuple[int, int], rois: list, overlaps: list[float]
) -> list[tuple[tuple[int, int], float]]:
    """``(roi_size, overlap)`` for every ``--roi`` (a side, an ``(H, W)``, or :data:`WHOLE` for the image's shape) and overlap,
    in that order; a setting that places the same windows as an earlier one is left out."""
    settings, seen = [], set()
    for roi in rois:
        roi_size = tuple(shape) if roi == WHOLE else roi if isinstance(roi, tuple) else (roi, roi)
        for overlap in overlaps:
            windows = (roi_size, tuple(str(window) for window in window_slices(shape, roi_size, overlap)))
            if windows not in seen:
                seen.add(windows)
                settings.append((roi_size, overlap))
    return settings


def _roi_argument(value: str):
    """``--roi``: :data:`WHOLE`, a positive side in pixels, or ``HxW`` (returned as an ``(H, W)`` tuple)."""
    if value == WHOLE:
        return value
    try:
        sides = tuple(int(side) for side in value.split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise argparse.ArgumentTypeError(f"a window side in pixels, HxW or {WHOLE!r}, got {value!r}")
    return sides if len(sides) == 2 else sides[0]


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


# ------------------------------------------------------------------ window settings against BasicUNet, one process
def _time_sliding_window(network: torch.nn.Module, image: torch.Tensor, roi_size, overlap: float, sw_batch_size: int) -> float:
    """Seconds of one CPU sliding-window inference of ``image``."""
    from monai.inferers import SlidingWindowInferer

    inferer = SlidingWindowInferer(roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=MODE)
    start = time.perf_counter()
    with torch.inference_mode():
        inferer(image, network)
    return time.perf_counter() - start


def compare_window_settings(
    models: list[str],
    settings: list[tuple[tuple[int, int], float]],
    repeats: int,
    sw_batch_size: int,
    shape: tuple[int, int] = SMALL_IMAGE,
) -> dict:
    """Time every model under every ``(roi_size, overlap)`` with ``sw_batch_size`` on an image of ``shape`` (H, W),
    each run followed at once by one of :data:`BASELINE_MODEL` at ``ROI_SIZE`` / ``OVERLAP`` /
    :data:`BASELINE_SW_BATCH_SIZE`, ``repeats`` rounds.

    Returns:
        ``{"shape": shape, "baseline": [seconds, ...], "rows": [{"model", "roi_size", "overlap", "seconds": [...],
        "ratios": [...]}, ...]}``; a ratio is the baseline's seconds over the setting's in one pair (above 1: faster).
    """
    networks = {name: build_model(name) for name in {*models, BASELINE_MODEL}}
    image = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    rows = [
        {"model": model, "roi_size": roi_size, "overlap": overlap, "seconds": [], "ratios": []}
        for model in models
        for roi_size, overlap in settings
    ]

    def baseline() -> float:
        return _time_sliding_window(networks[BASELINE_MODEL], image, ROI_SIZE, OVERLAP, BASELINE_SW_BATCH_SIZE)

    def timed(row: dict) -> float:
        return _time_sliding_window(networks[row["model"]], image, row["roi_size"], row["overlap"], sw_batch_size)

    baseline()  # warm-up: the first run of each allocates
    for row in rows:
        timed(row)
    baseline_seconds = []
    for _ in range(repeats):
        for row in rows:
            seconds, reference = timed(row), baseline()
            row["seconds"].append(seconds)
            row["ratios"].append(reference / seconds)
            baseline_seconds.append(reference)
    return {"shape": tuple(shape), "baseline": baseline_seconds, "rows": rows}


def forward_parts(model: str, input_shapes: list[tuple[int, ...]], repeats: int) -> list[dict]:
    """GMACs and median seconds of a ResidualFormer's encoder and decoder in one forward pass of each input shape."""
    from rformer_monai.networks import count_macs

    network = build_model(model)
    parts = []
    for shape in input_shapes:
        image = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        encoder_seconds, decoder_seconds = [], []
        with torch.inference_mode():
            network(image)  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                features = network.encoder(image)
                middle = time.perf_counter()
                network.decoder(features)
                encoder_seconds.append(middle - start)
                decoder_seconds.append(time.perf_counter() - middle)
        encoder_macs = count_macs(network.encoder, shape)
        parts.append({
            "model": model, "shape": shape,
            "encoder_macs": encoder_macs, "decoder_macs": count_macs(network, shape) - encoder_macs,
            "encoder_seconds": statistics.median(encoder_seconds), "decoder_seconds": statistics.median(decoder_seconds),
        })
    return parts


def _setting_label(model: str, roi_size, overlap: float, shape: tuple[int, int]) -> str:
    if tuple(roi_size) == tuple(shape):
        window = f"whole image ({roi_size[1]} x {roi_size[0]})"
    else:
        window = f"{roi_size[1]} x {roi_size[0]}, overlap {overlap:g}"
    return f"{MODELS[model][0]}: {window}"


def window_settings_table(comparison: dict) -> str:
    """Markdown table of :func:`compare_window_settings`: medians, and the range of the pairs' ratios."""
    shape = comparison["shape"]
    megapixels = shape[0] * shape[1] / 1e6
    lines = [
        (
            f"| setting | windows | pixels computed / image pixels | s per {shape[1]} x {shape[0]} image | MP/s "
            "| speed vs BasicUNet 256 x 256 / 0.25 (median of pairs; range) | fastest run: s, speed vs BasicUNet's |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    baseline, fastest_baseline = statistics.median(comparison["baseline"]), min(comparison["baseline"])
    windows = window_count(shape)
    lines.append(
        f"| {_setting_label(BASELINE_MODEL, ROI_SIZE, OVERLAP, shape)} (every pair's reference) | {windows} | "
        f"{windows * ROI_SIZE[0] * ROI_SIZE[1] / 1e6 / megapixels:.2f} | {baseline:.3g} | {megapixels / baseline:.3g} | 1 | "
        f"{fastest_baseline:.3g}, 1 |"
    )
    for row in comparison["rows"]:
        windows = window_count(shape, row["roi_size"], row["overlap"])
        computed = windows * row["roi_size"][0] * row["roi_size"][1] / 1e6
        seconds = statistics.median(row["seconds"])
        lines.append(
            f"| {_setting_label(row['model'], row['roi_size'], row['overlap'], shape)} | {windows} | "
            f"{computed / megapixels:.2f} | {seconds:.3g} | {megapixels / seconds:.3g} | "
            f"**{statistics.median(row['ratios']):.2f}x**; {min(row['ratios']):.2f} to {max(row['ratios']):.2f} | "
            f"{min(row['seconds']):.3g}, {fastest_baseline / min(row['seconds']):.2f}x |"
        )
    return "\n".join(lines)


def forward_parts_table(parts: list[dict]) -> str:
    """Markdown table of :func:`forward_parts`."""
    lines = [
        "| network | input (B x W x H) | encoder GMACs | decoder GMACs | encoder s | decoder s | decoder share of time |",
        "|---|---|---|---|---|---|---|",
    ]
    for part in parts:
        batch, _, height, width = part["shape"]
        total = part["encoder_seconds"] + part["decoder_seconds"]
        lines.append(
            f"| {MODELS[part['model']][0]} | {batch} x {width} x {height} | {part['encoder_macs'] / 1e9:.1f} | "
            f"{part['decoder_macs'] / 1e9:.1f} | {part['encoder_seconds']:.3g} | {part['decoder_seconds']:.3g} | "
            f"{part['decoder_seconds'] / total:.0%} |"
        )
    return "\n".join(lines)


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


def _main_window_settings(arguments: argparse.Namespace) -> int:
    """``--roi``: the window-settings table and the encoder/decoder split, printed as markdown."""
    from rformer_monai.workflows import keep_freed_buffers

    if arguments.keep_freed_buffers:
        keep_freed_buffers()
    torch.set_num_threads(arguments.threads)
    models = arguments.models or ["bundle"]
    shape = tuple(arguments.image)
    settings = window_settings(shape, arguments.roi, arguments.overlap)
    print(f"# Window settings on a {shape[1]} x {shape[0]} micrograph, CPU fp32, {MODE} blending, sw_batch_size "
          f"{arguments.sw_batch_size}, {arguments.repeats} interleaved rounds"
          f"{', freed buffers kept' if arguments.keep_freed_buffers else ''}\n\n{_machine(['cpu'], arguments.threads)}\n")
    comparison = compare_window_settings(models, settings, arguments.repeats, arguments.sw_batch_size, shape)
    print(window_settings_table(comparison) + "\n", flush=True)
    shapes = [(arguments.sw_batch_size, 1, *ROI_SIZE), (1, 1, *shape)]
    residualformers = [model for model in models if model not in MONAI_MODELS]
    parts = [part for model in residualformers for part in forward_parts(model, shapes, arguments.repeats)]
    if parts:
        print(forward_parts_table(parts))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case and print JSON
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="default all; with --roi the bundle's")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], help="default cpu, and cuda when present")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (the median is reported)")
    parser.add_argument("--skip_8192", action="store_true", help="only the 1024 x 768 micrograph")
    parser.add_argument("--quick", action="store_true", help="one run; estimate the 8192 x 8192 case on CPU")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch CPU threads (default 2, as the README's timings)")
    parser.add_argument("--sw_batch_size", type=int, default=4, help="windows per forward pass (the bundle's 4)")
    parser.add_argument("--tta", action="store_true", help="also time 8-fold test-time augmentation (1024 x 768)")
    parser.add_argument("--cuda_precision", choices=sorted(PRECISIONS), default="bf16", help="autocast on CUDA")
    parser.add_argument("--channels_last", action="store_true", help="channels-last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument(
        "--keep_freed_buffers", action="store_true", help="call rformer_monai.workflows.keep_freed_buffers, as inference.json does"
    )
    parser.add_argument(
        "--roi", nargs="+", type=_roi_argument,
        help=f"window sides (or HxW) to time against BasicUNet at 256 / 0.25 in one process ({WHOLE!r}: the whole image); "
        "--models defaults to the bundle's network",
    )
    parser.add_argument("--overlap", nargs="+", type=float, default=[OVERLAP], help="overlaps for --roi (default 0.25)")
    parser.add_argument(
        "--image", nargs=2, type=int, default=list(SMALL_IMAGE), metavar=("H", "W"),
        help="image height and width for --roi (default 768 1024; 712 1024 is a BAM frame with its data bar cut, "
        "as the bundle infers it)",
    )
    arguments = parser.parse_args(argv)
    if arguments.case:
        print(json.dumps(run_case(json.loads(arguments.case))))
        return 0
    if arguments.roi:
        return _main_window_settings(arguments)

    from rformer_monai.networks import count_macs, count_parameters

    devices = arguments.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--devices cuda: no CUDA device")
    arguments.models = arguments.models or list(MODELS)
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
