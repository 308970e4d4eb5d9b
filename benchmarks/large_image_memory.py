"""Time and peak resident memory of the bundle's inference (its ``analysis`` in inference.json, every output: mask,
labels, particle table, ROIs, overlay, size plot, record) on synthetic micrographs of growing size, each in a fresh
process.

    python benchmarks/large_image_memory.py [--sizes 1024x768 8192x8192 16384x16384] [--network bundle|identity]
        [--threads 1] [--block_size 4096] [--sw_batch_size N] [--masks_only] [--work_dir DIR]

The micrograph is a lattice of bright disks on a textured background with a 5 % data bar, written as an
uncompressed 8-bit TIFF strip by strip. ``--network bundle`` is the bundle's network with its shipped weights;
``identity`` a 1x1 convolution (weight 1, bias 0) on z-scored blocks, which measures the preparation, the streaming
and the particle step without the network's cost. Prints one markdown row per size: seconds, megapixels per second,
particles, peak resident memory (VmHWM). ``--masks_only`` leaves out the particle step (the mask alone).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE = REPOSITORY / "bundles" / "residualformer_sem"
BAR_FRACTION = 0.05
STRIP_ROWS = 512
DISK_PERIOD = (97, 89)
DISK_RADIUS = 20


def lattice_rows(start: int, stop: int, width: int, height: int) -> np.ndarray:
    """Rows [start, stop) of the synthetic micrograph: disks on a textured background, a black bar at the bottom."""
    rows = np.arange(start, stop)[:, None]
    columns = np.arange(width)[None, :]
    image = (40 + (7 * rows + 13 * columns) % 23).astype(np.uint8)
    disks = (rows % DISK_PERIOD[0] - DISK_PERIOD[0] // 2) ** 2 + (columns % DISK_PERIOD[1] - DISK_PERIOD[1] // 2) ** 2
    image[disks <= DISK_RADIUS**2] = 200
    image[rows[:, 0] >= height - int(BAR_FRACTION * height)] = 0
    return image


def write_micrograph(path: Path, height: int, width: int) -> Path:
    import tifffile

    strips = (
        lattice_rows(start, min(start + STRIP_ROWS, height), width, height) for start in range(0, height, STRIP_ROWS)
    )
    tifffile.imwrite(path, strips, shape=(height, width), dtype=np.uint8, rowsperstrip=STRIP_ROWS)
    return path


def child(arguments: argparse.Namespace) -> None:
    import torch
    from monai.bundle import ConfigParser

    from rformer_monai.inference.memory import peak_resident_bytes

    torch.set_num_threads(arguments.threads)
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    overrides = {
        "bundle_root": str(BUNDLE),
        "device": "$torch.device('cpu')",
        "output_dir": arguments.output_dir,
        "block_size": arguments.block_size,
        "pixel_size_nm": 1.0,
    }
    if arguments.sw_batch_size is not None:
        overrides["sw_batch_size"] = arguments.sw_batch_size
    if arguments.network == "identity":
        overrides.update(trained_network="$torch.nn.Conv2d(1, 1, 1)", intensity="zscore")
    for key, value in overrides.items():
        parser[key] = value
    analysis = parser.get_parsed_content("analysis")
    if arguments.network == "identity":
        with torch.no_grad():
            analysis.network.weight.fill_(1.0)
            analysis.network.bias.zero_()
    start = time.perf_counter()
    row = analysis(arguments.child, particles=not arguments.masks_only)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - start,
                "peak_bytes": peak_resident_bytes(),
                "particles": int(row.get("particle_count", -1)),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1024x768", "8192x8192"], help="WIDTHxHEIGHT")
    parser.add_argument("--network", choices=["bundle", "identity"], default="bundle")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--block_size", type=int, default=4096)
    parser.add_argument("--sw_batch_size", type=int, help="default the config's")
    parser.add_argument("--masks_only", action="store_true", help="leave out the particle step")
    parser.add_argument("--work_dir", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments)
        return
    print(
        f"| network{' (masks only)' if arguments.masks_only else ''} | image (W x H) | block | s / image | MP/s | particles | peak RSS (GB) |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=arguments.work_dir) as work:
        for size in arguments.sizes:
            width, height = (int(side) for side in size.split("x"))
            image = write_micrograph(Path(work) / f"lattice_{size}.tif", height, width)
            command = [
                sys.executable,
                __file__,
                "--child",
                str(image),
                "--output_dir",
                str(Path(work) / f"out_{size}"),
                "--network",
                arguments.network,
                "--threads",
                str(arguments.threads),
                "--block_size",
                str(arguments.block_size),
                *([] if arguments.sw_batch_size is None else ["--sw_batch_size", str(arguments.sw_batch_size)]),
                *(["--masks_only"] if arguments.masks_only else []),
            ]
            result = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            print(
                f"| {arguments.network} | {width} x {height} | {arguments.block_size} | {result['seconds']:.1f} | "
                f"{width * height / 1e6 / result['seconds']:.3f} | {result['particles']} | {result['peak_bytes'] / 1e9:.2f} |",
                flush=True,
            )
            image.unlink()


if __name__ == "__main__":
    main()
