"""Run the bundle's inference on micrographs of any size: a thin alias of ``monai.bundle run`` with
inference.json.

    python -m rformer_monai.inference IN OUT --bundle_root bundles/residualformer_sem [--block_size 4096]
        [--config_file F ...] [--ckpt_path P] [--device cpu] [--amp | --no-amp] [--tta dihedral]
        [--threads N] [--override KEY=VALUE ...]

IN is a micrograph or a folder searched recursively; every input gets the bundle's outputs in OUT (mask, labels,
particle table, ROIs, overlay, size plot, record; summary.csv, run.json and report.html for the folder), computed
block by block (:func:`rformer_monai.inference.analyse_micrograph`), exactly as ``monai.bundle run`` or
``rformer segment`` with the same config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigWorkflow

from rformer_monai.folders import OutputFolderError, claim_output_folder
from rformer_monai.inference.bundle import INFERENCE_CONFIG, parse_override
from rformer_monai.inference.tta import TTA_MODES
from rformer_monai.workflows.errors import FailedInputsError, find_user_error

logger = logging.getLogger("rformer_monai.inference")


AMP_DTYPES = ("float16", "bfloat16")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rformer_monai.inference", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="a micrograph, or a folder searched recursively")
    parser.add_argument("output_dir", type=Path, help="folder of the outputs")
    parser.add_argument("--bundle_root", type=Path, required=True, help="the bundle folder")
    parser.add_argument("--config_file", nargs="+", type=Path, help="configs merged in order (default inference.json)")
    parser.add_argument("--ckpt_path", type=Path, help="trained weights (default the config's ckpt_path)")
    parser.add_argument("--device", help="where the network runs, e.g. cpu or cuda:0 (default the config's device)")
    parser.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None,
        help="mixed precision (default the config's amp, on CUDA only)",
    )
    parser.add_argument("--amp_dtype", choices=AMP_DTYPES, help="default float16 on CUDA, bfloat16 on CPU")
    parser.add_argument("--block_size", type=int, help="target block core side, pixels (default the config's)")
    parser.add_argument("--tta", choices=sorted(TTA_MODES), help="test-time augmentation (default none)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default torch's choice)")
    parser.add_argument("--scratch_dir", type=Path, help="where compressed TIFFs are decoded (default OUT)")
    parser.add_argument(
        "--override", nargs="*", type=parse_override, default=[], metavar="KEY=VALUE",
        help="config overrides, e.g. network_def#fusion_stride=4 sw_batch_size=8",
    )
    return parser


def bundle_overrides(arguments: argparse.Namespace) -> dict:
    """The ``monai.bundle run`` overrides the command line stands for."""
    override = dict(arguments.override)
    override.update(dataset_dir=str(arguments.input), output_dir=str(arguments.output_dir))
    options = {
        "ckpt_path": None if arguments.ckpt_path is None else str(arguments.ckpt_path),
        "device": arguments.device,
        "amp": arguments.amp,
        "block_size": arguments.block_size,
        "tta": arguments.tta,
        "scratch_dir": None if arguments.scratch_dir is None else str(arguments.scratch_dir),
        "analysis#amp_dtype": None if arguments.amp_dtype is None else f"$torch.{arguments.amp_dtype}",
    }
    override.update({key: value for key, value in options.items() if value is not None})
    return override


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bundle's inference; returns 0, 1 when some inputs failed (listed in OUT/failed.csv), 2 on a setup
    error (a missing checkpoint or config, a bad setting), reported on one line."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)
    try:
        claim_output_folder(arguments.output_dir)  # before the network loads; no other run writes there
    except OutputFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config_files = arguments.config_file or [arguments.bundle_root / INFERENCE_CONFIG]
    missing = [str(file) for file in config_files if not Path(file).is_file()]
    if missing:
        print(f"error: config file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    hook = sys.excepthook
    try:
        workflow = ConfigWorkflow(
            config_file=[str(file) for file in config_files], workflow_type="infer", logging_file=None,
            bundle_root=str(arguments.bundle_root), **bundle_overrides(arguments),
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    except Exception as exc:
        error = find_user_error(exc)
        if isinstance(error, FailedInputsError):
            logger.error("%s", error)
            return 1
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        sys.excepthook = hook  # the config's initialize installs the bundle's error reporter
    return 0


if __name__ == "__main__":
    sys.exit(main())
