"""Time and peak memory of segmenting a stack through rformer_monai.volumes: neither the network pass's memory
nor the particle step's grows with the number of slices.

    python benchmarks/volume_memory.py --size 1024 --slices 4 8 16 [--threads 1] [--keep]
    python benchmarks/volume_memory.py --size 1024 --slices 50 200 --network grey

For each slice count a synthetic ImageJ TIFF stack (uint8, size x size pixels, 15 x 7.5 x 7.5 nm) is written
slice by slice, then segmented in a fresh process on the CPU (rformer_monai.volumes.segment_stack): the whole
3-D run, network pass, particle step and every output file. ``--network shipped`` (default) runs the bundle's
network; ``--network grey`` a stand-in that thresholds the locally averaged grey level (a few ms per slice, the
same sliding windows), so that stacks of hundreds of slices run in minutes on a CPU; the particle step and the
outputs are the real ones either way. Peak resident memory (VmHWM) is read after the network pass, reset
(``/proc/self/clear_refs``) and read again at the end: the particle step's own peak, outputs included. Prints a
markdown table and the growth per slice between the smallest and largest count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE_ROOT = REPOSITORY / "bundles" / "residualformer_sem"
SPACING_NM = (15.0, 7.5, 7.5)
TILE_SHAPE = (40, 128, 128)  # the synthetic generator's default stack, tiled across each slice
GREY_LEVEL = 0.25
"""The stand-in network's particle level in the stack's unit-normalised grey levels: between the synthetic
support (about 30 of 255) and the particles (90 to 150)."""
GREY_GAIN = 40.0  # logit per unit of normalised grey level
GREY_AVERAGE_PX = 3  # the stand-in averages the grey level over 3 x 3 pixels (the noise makes no particles)
NETWORKS = ("shipped", "grey")


def peak_rss_mb() -> float:
    """VmHWM of this process in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_stack(path: Path, size: int, slices: int) -> None:
    """A synthetic stack written one slice at a time (the generator's particles tiled across the slice)."""
    import tifffile

    from rformer_monai.volumes.synthetic import make_synthetic_volume, render_slice

    tile = make_synthetic_volume(TILE_SHAPE, SPACING_NM, seed=0)
    generator = np.random.default_rng(0)
    levels = np.concatenate([[0.0], generator.uniform(90, 150, size=len(tile.particles))])
    reps = (-(-size // TILE_SHAPE[1]), -(-size // TILE_SHAPE[2]))

    def planes():
        for index in range(slices):
            labels = np.tile(tile.labels[index % TILE_SHAPE[0]], reps)[:size, :size]
            # a different particle number per tile copy is not needed for memory or time
            yield np.clip(np.rint(render_slice(labels, generator, levels)), 0, 255).astype(np.uint8)

    tifffile.imwrite(path, planes(), shape=(slices, size, size), dtype=np.uint8, imagej=True,
                     resolution=(1 / SPACING_NM[2], 1 / SPACING_NM[1]), metadata={"spacing": SPACING_NM[0], "unit": "nm"})


def reset_peak_rss() -> None:
    """Reset VmHWM to the current resident memory (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def grey_level_network():
    """The stand-in network: particle logits from the grey level averaged over 3 x 3 pixels."""
    import torch

    class GreyLevel(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            average = torch.nn.functional.avg_pool2d(image, GREY_AVERAGE_PX, stride=1, padding=GREY_AVERAGE_PX // 2,
                                                     count_include_pad=False)
            return GREY_GAIN * (average - GREY_LEVEL)

    return GreyLevel()


def run_case(stack: Path, output_dir: Path, network_name: str) -> dict:
    """Segment ``stack`` in this process and report time and peak memory of both phases."""
    import torch

    from rformer_monai.inference.bundle import load_bundle_inference
    from rformer_monai.volumes import segment
    from rformer_monai.volumes.io import open_stack

    bundle = load_bundle_inference(BUNDLE_ROOT, override={"device": "cpu"})
    network, intensity = (bundle.network, bundle.intensity) if network_name == "shipped" else (grey_level_network(), "unit")
    phases = {}
    original = segment.predict_stack_probability

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, **kwargs)
        phases["network_s"] = time.perf_counter() - start
        phases["network_peak_mb"] = peak_rss_mb()
        phases["after_network_s"] = time.perf_counter()
        reset_peak_rss()
        return result

    segment.predict_stack_probability = timed
    with open_stack(stack) as source:
        shape = source.shape
    start = time.perf_counter()
    row = segment.segment_stack(stack, output_dir, network, bundle.inferer, torch.device("cpu"),
                                intensity=intensity, progress=False)
    end = time.perf_counter()
    return {
        "shape": list(shape), "network": network_name, "threads": torch.get_num_threads(), "total_s": end - start,
        "network_s": phases["network_s"], "network_s_per_slice": phases["network_s"] / shape[0],
        "particle_step_s": end - phases["after_network_s"], "network_peak_mb": phases["network_peak_mb"],
        "particle_step_peak_mb": peak_rss_mb(), "particles": row["particles"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--slices", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--network", choices=NETWORKS, default="shipped",
                        help="the bundle's network, or the grey-level stand-in for long stacks")
    parser.add_argument("--keep", action="store_true", help="keep the stacks and outputs (printed folder)")
    parser.add_argument("--case", nargs=2, metavar=("STACK", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.case:
        import torch

        torch.set_num_threads(arguments.threads)
        print(json.dumps(run_case(Path(arguments.case[0]), Path(arguments.case[1]), arguments.network)))
        return
    folder = Path(tempfile.mkdtemp(prefix="volume_memory_"))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": str(arguments.threads)}
    results = []
    for slices in arguments.slices:
        stack = folder / f"stack_{arguments.size}x{arguments.size}x{slices}.tif"
        write_stack(stack, arguments.size, slices)
        completed = subprocess.run(
            [sys.executable, __file__, "--threads", str(arguments.threads), "--network", arguments.network,
             "--case", str(stack), str(folder / "out")],
            capture_output=True, text=True, env=environment, check=False,
        )
        if completed.returncode:
            raise SystemExit(completed.stderr[-3000:])
        results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print("| stack (z x y x x) | network | network pass, s per slice | network pass peak RSS | particle step "
          "and outputs | their peak RSS | particles |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        z, y, x = row["shape"]
        print(f"| {z} x {y} x {x} | {row['network']} | {row['network_s_per_slice']:.2f} s | "
              f"{row['network_peak_mb']:.0f} MB | {row['particle_step_s']:.0f} s | "
              f"{row['particle_step_peak_mb']:.0f} MB | {row['particles']} |")
    if len(results) > 1:
        first, last = results[0], results[-1]
        extra = last["shape"][0] - first["shape"][0]
        for phase, key in (("network pass", "network_peak_mb"), ("particle step", "particle_step_peak_mb")):
            growth = (last[key] - first[key]) / extra
            print(f"\n{phase}: {growth:+.2f} MB per extra slice between {first['shape'][0]} and {last['shape'][0]} "
                  f"slices; {arguments.threads} thread(s)")
    if not arguments.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"\nstacks and outputs kept in {folder}")


if __name__ == "__main__":
    main()
