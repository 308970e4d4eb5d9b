"""Segment micrographs of any size with a bundle's trained network, in blocks streamed from and to disk.

    python -m rformer_monai.inference IN OUT --bundle_root bundles/residualformer_sem [--block_size 4096]
        [--config_file F ...] [--ckpt_path P] [--device cpu] [--amp | --no-amp] [--tta dihedral]
        [--threads N] [--override KEY=VALUE ...]

IN is a micrograph or a folder searched recursively; every input gets OUT/<stem>_mask.tif (uint8 0/255, the
input's full size, the data bar's rows 0), as the bundle's inference writes it. The network, sliding window,
intensity normalisation, data-bar setting and threshold come from the bundle's inference config.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from rformer_monai.data import inference_datalist
from rformer_monai.folders import claim_output_folder
from rformer_monai.inference.blocks import DEFAULT_BLOCK_SIZE, segment_large_micrograph
from rformer_monai.inference.bundle import load_bundle_inference, parse_override
from rformer_monai.inference.tta import TTA_MODES, with_tta
from rformer_monai.networks import CheckpointError
from rformer_monai.transforms.io import MicrographReadError

logger = logging.getLogger("rformer_monai.inference")

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}




def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rformer_monai.inference", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="a micrograph, or a folder searched recursively")
    parser.add_argument("output_dir", type=Path, help="folder of the <stem>_mask.tif files")
    parser.add_argument("--bundle_root", type=Path, required=True, help="the bundle folder")
    parser.add_argument("--config_file", nargs="+", type=Path, help="configs merged in order (default inference.json)")
    parser.add_argument("--ckpt_path", type=Path, help="trained weights (default the config's ckpt_path)")
    parser.add_argument("--device", help="where the network runs, e.g. cpu or cuda:0 (default the config's device)")
    parser.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None,
        help="mixed precision (default the config's amp, on CUDA only)",
    )
    parser.add_argument("--amp_dtype", choices=sorted(AMP_DTYPES), help="default float16 on CUDA, bfloat16 on CPU")
    parser.add_argument("--block_size", type=int, default=DEFAULT_BLOCK_SIZE, help="target block core side, pixels")
    parser.add_argument("--tta", choices=sorted(TTA_MODES), help="test-time augmentation (default none)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default torch's choice)")
    parser.add_argument("--scratch_dir", type=Path, help="where compressed TIFFs are decoded (default OUT)")
    parser.add_argument(
        "--override", nargs="*", type=parse_override, default=[], metavar="KEY=VALUE",
        help="config overrides, e.g. network_def#fusion_stride=4 sw_batch_size=8",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Segment every input; returns 0, or 1 when some inputs failed (each named in the log)."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)
    override = dict(arguments.override)
    if arguments.ckpt_path is not None:
        override["ckpt_path"] = str(arguments.ckpt_path)
    if arguments.device is not None:
        override["device"] = arguments.device
    try:
        claim_output_folder(arguments.output_dir)  # before the network loads; no other run writes there
        parts = load_bundle_inference(arguments.bundle_root, arguments.config_file, override)
        inputs = [item["image"] for item in inference_datalist(arguments.input)]
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    amp = (parts.amp and parts.device.type == "cuda") if arguments.amp is None else arguments.amp
    network = with_tta(parts.network, arguments.tta)
    failed = []
    for path in inputs:
        start = time.perf_counter()
        try:
            mask = segment_large_micrograph(
                path,
                arguments.output_dir,
                network,
                parts.inferer,
                block_size=arguments.block_size,
                intensity=parts.intensity,
                crop_bottom=parts.crop_bottom,
                threshold=parts.threshold,
                device=parts.device,
                amp=amp,
                amp_dtype=AMP_DTYPES.get(arguments.amp_dtype),
                scratch_dir=arguments.scratch_dir,
            )
        except (MicrographReadError, ValueError, OSError) as exc:
            logger.error("%s: %s", path, exc)
            failed.append(path)
            continue
        logger.info("%s -> %s (%.1f s)", path, mask, time.perf_counter() - start)
    if failed:
        logger.error("%d of %d inputs failed", len(failed), len(inputs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
