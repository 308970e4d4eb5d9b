"""The ``rformer`` command: thin wrappers that run the bundle's own workflows (``monai.bundle``'s
``ConfigWorkflow`` on the bundle's configs) and the sharing tools, with plain options.

    rformer segment IN -o OUT [--pixel-size-nm 7.3] [--weights model.pt] [--device cpu]
    rformer segment-3d IN -o OUT [--spacing-nm 15 7.5 7.5] [--orthogonal]
    rformer train DIR -o RUN
    rformer evaluate DIR -o OUT
    rformer export [-o model.onnx]
    rformer pack -o dist/
    rformer fetch URL --sha256 HEX -o bundles/
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rformer_monai.bundle_location import BUNDLE_ENVIRONMENT_VARIABLE, METADATA_CONFIG, find_bundle_root

__all__ = ["main"]

logger = logging.getLogger("rformer")

CONTRAST_CHOICES = ("auto", "bright", "dark")
LOG_FORMAT = "%(levelname)s %(message)s"
QUIET_LOGGERS = ("monai.bundle", "PIL", "ignite", "matplotlib")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _override(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, _parse_value(value)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_bundle_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    parser.add_argument(
        "--bundle-root", type=Path, default=None,
        help=f"the bundle folder (default: ${BUNDLE_ENVIRONMENT_VARIABLE}, else bundles/residualformer_sem beside "
        "the package or in the working folder)",
    )
    if device:
        parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda:0 where there is a GPU, else cpu)")
    parser.add_argument(
        "--set", dest="overrides", action="append", type=_override, default=[], metavar="KEY=VALUE",
        help="any other config setting, by key (JSON values), e.g. --set tta='\"flips\"'; repeatable",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rformer", description="Nanoparticle segmentation and measurement for SEM/TEM micrographs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step (MONAI's and ignite's too)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    segment = commands.add_parser(
        "segment",
        help="segment, count and measure particles in a micrograph or a folder (per image: mask, labels, particle "
        "CSV, ImageJ ROIs, overlay; per run: summary.csv, size distribution, run.json, report.html)",
    )
    segment.add_argument("input", type=Path, help="a micrograph file, or a folder searched recursively for TIFF, PNG, JPEG, BMP")
    segment.add_argument("-o", "--output", type=Path, required=True, help="output folder (created when missing)")
    segment.add_argument(
        "--pixel-size-nm", type=_positive, default=None, metavar="NM",
        help="pixel size in nm for every input, overriding the files' metadata (default: read from each file; "
        "sizes in px where none is found)",
    )
    segment.add_argument(
        "--contrast", choices=CONTRAST_CHOICES, default=None,
        help="particles brighter or darker than the background (default: the bundle's setting; needs a bundle "
        "with a 'contrast' key)",
    )
    segment.add_argument("--weights", type=Path, default=None, help="trained weights (default: <bundle>/models/model.pt)")
    segment.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist (default: skip them)")
    _add_bundle_options(segment)

    segment_3d = commands.add_parser(
        "segment-3d",
        help="segment FIB-SEM stacks and tomograms slice by slice and measure 3-D particles in nm (per stack: "
        "labels as NIfTI and ImageJ TIFF, particle CSV, size distribution, orthogonal views; per run: summary_3d.csv)",
    )
    segment_3d.add_argument(
        "input", type=Path, help="a stack, or a folder searched recursively for stacks (ImageJ TIFF, NIfTI, MHA, NRRD)"
    )
    segment_3d.add_argument("-o", "--output", type=Path, required=True, help="output folder (created when missing)")
    segment_3d.add_argument(
        "--spacing-nm", type=_positive, nargs=3, default=None, metavar=("Z", "Y", "X"),
        help="voxel spacing in nm for every stack, overriding the files' (default: read from each file; sizes in "
        "voxels where none is found)",
    )
    segment_3d.add_argument(
        "--orthogonal", action="store_true",
        help="also predict the xz and yz planes and average the three directions (near-isotropic stacks only, 3x the time)",
    )
    segment_3d.add_argument("--weights", type=Path, default=None, help="trained weights (default: <bundle>/models/model.pt)")
    segment_3d.add_argument("--overwrite", action="store_true", help="redo stacks whose outputs exist (default: skip them)")
    _add_bundle_options(segment_3d)

    train = commands.add_parser("train", help="train on a labelled folder")
    train.add_argument("dataset", type=Path, help="labelled folder (images/ + masks/, or the BAM layout)")
    train.add_argument(
        "-o", "--output", type=Path, required=True,
        help="run folder: the best weights (model.pt), history, checkpoints, TensorBoard events, settings.json",
    )
    train.add_argument(
        "--from-scratch", action="store_true",
        help="train from random weights with the shipped weights' recipe (default: fine-tune the shipped weights)",
    )
    train.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    _add_bundle_options(train)

    evaluate = commands.add_parser("evaluate", help="score the weights on a labelled folder")
    evaluate.add_argument("dataset", type=Path, help="labelled folder (images/ + masks/, or the BAM layout)")
    evaluate.add_argument("-o", "--output", type=Path, required=True, help="folder of metrics.json, metrics.csv, instance_metrics.json")
    evaluate.add_argument("--weights", type=Path, default=None, help="trained weights (default: <bundle>/models/model.pt)")
    _add_bundle_options(evaluate)

    export = commands.add_parser("export", help="export the trained network to ONNX")
    export.add_argument("-o", "--output", type=Path, default=None, help="the ONNX file (default: <bundle>/models/model.onnx)")
    export.add_argument("--weights", type=Path, default=None, help="trained weights (default: <bundle>/models/model.pt)")
    _add_bundle_options(export, device=False)

    pack = commands.add_parser("pack", help="zip the bundle as <name>_v<version>.zip with its .sha256")
    pack.add_argument("-o", "--output", type=Path, required=True, help="folder of the zip and its checksum")
    pack.add_argument("--name", default=None, help="bundle name, the zip's top folder (default: the folder's name)")
    pack.add_argument("--bundle-root", type=Path, default=None, help="the bundle folder (default: as for segment)")

    fetch = commands.add_parser("fetch", help="download a packed bundle, check its SHA-256, extract it")
    fetch.add_argument("url", help="https://, http:// or file:// address of the zip")
    fetch.add_argument("--sha256", default=None, help="the zip's SHA-256 hex digest")
    fetch.add_argument("-o", "--output", type=Path, required=True, help="folder the bundle is extracted into")
    fetch.add_argument("--name", default=None, help="folder name of the bundle (default: the zip's top folder)")
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True)
    if not verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*[Pp]alette images.*")


def _run_workflow(root: Path, configs: Sequence[str], workflow_type: str, overrides: dict[str, Any]) -> None:
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(root / "configs" / name) for name in configs],
        meta_file=str(root / METADATA_CONFIG),
        logging_file=None,
        workflow_type=workflow_type,
        bundle_root=str(root),
        **overrides,
    )
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()


def _device(value: str | None) -> dict[str, Any]:
    return {} if value is None else {"device": f"$torch.device('{value}')"}


def _inference_overrides(arguments: argparse.Namespace) -> dict[str, Any]:
    """The settings ``segment`` and ``segment-3d`` share: input, output folder, resume, device, weights."""
    overrides: dict[str, Any] = {
        "dataset_dir": str(arguments.input),
        "output_dir": str(arguments.output),
        "overwrite": arguments.overwrite,
        **_device(arguments.device),
    }
    if arguments.weights is not None:
        overrides["ckpt_path"] = str(arguments.weights)
    return overrides


def _segment(arguments: argparse.Namespace, root: Path) -> None:
    from monai.bundle import ConfigParser

    overrides = _inference_overrides(arguments)
    if arguments.pixel_size_nm is not None:
        overrides["pixel_size_nm"] = arguments.pixel_size_nm
    if arguments.contrast is not None:
        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        if "contrast" not in parser.get():
            raise SystemExit(f"rformer: --contrast: this bundle ({root}) has no 'contrast' setting")
        overrides["contrast"] = arguments.contrast
    overrides.update(dict(arguments.overrides))
    _run_workflow(root, ["inference.json"], "infer", overrides)


def _segment_3d(arguments: argparse.Namespace, root: Path) -> None:
    overrides = {**_inference_overrides(arguments), "orthogonal": arguments.orthogonal}
    if arguments.spacing_nm is not None:
        overrides["spacing_nm"] = list(arguments.spacing_nm)
    overrides.update(dict(arguments.overrides))
    _run_workflow(root, ["inference.json", "inference_3d.json"], "infer", overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``rformer`` command; returns the exit status."""
    arguments = _parser().parse_args(argv)
    _configure_logging(arguments.verbose)
    try:
        if arguments.command == "fetch":
            from rformer_monai.sharing.package import fetch_bundle

            print(fetch_bundle(arguments.url, arguments.output, sha256=arguments.sha256, name=arguments.name))
            return 0
        root = find_bundle_root(arguments.bundle_root)
        if arguments.command == "segment":
            _segment(arguments, root)
        elif arguments.command == "segment-3d":
            _segment_3d(arguments, root)
        elif arguments.command == "train":
            overrides = {"dataset_dir": str(arguments.dataset), "ckpt_dir": str(arguments.output), **_device(arguments.device)}
            if arguments.from_scratch:
                overrides["pretrained"] = "null"  # the bundle reads the word; a None override would be dropped
            if arguments.epochs is not None:
                overrides["max_epochs"] = arguments.epochs
            _run_workflow(root, ["train.json"], "train", {**overrides, **dict(arguments.overrides)})
        elif arguments.command == "evaluate":
            overrides = {"dataset_dir": str(arguments.dataset), "eval_dir": str(arguments.output), **_device(arguments.device)}
            if arguments.weights is not None:
                overrides["ckpt_path"] = str(arguments.weights)
            _run_workflow(root, ["train.json", "evaluate.json"], "eval", {**overrides, **dict(arguments.overrides)})
        elif arguments.command == "export":
            from rformer_monai.sharing.onnx import export_bundle_onnx

            print(export_bundle_onnx(
                root, ckpt_path=arguments.weights, output_path=arguments.output, override=dict(arguments.overrides)
            ))
        elif arguments.command == "pack":
            from rformer_monai.sharing.package import pack_bundle

            packed = pack_bundle(root, arguments.output, arguments.name)
            print(f"{packed.archive}\n{packed.checksum_file}\nsha256 {packed.sha256} ({len(packed.files)} files)")
    except FileNotFoundError as error:
        print(f"rformer: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
