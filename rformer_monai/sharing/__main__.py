"""Command line for sharing the bundle.

    python -m rformer_monai.sharing pack  --bundle bundles/residualformer_sem --output dist/
    python -m rformer_monai.sharing fetch --url URL --sha256 HEX --bundle_dir bundles/
    python -m rformer_monai.sharing onnx  --bundle bundles/residualformer_sem
    python -m rformer_monai.sharing check --bundle bundles/residualformer_sem
"""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from rformer_monai.inference.bundle import parse_override
from rformer_monai.sharing.metadata import check_metadata
from rformer_monai.sharing.onnx import (
    DEFAULT_EXAMPLE_SHAPE,
    DEFAULT_OPSET,
    export_bundle_onnx,
)
from rformer_monai.sharing.package import (
    METADATA_PATH,
    fetch_bundle,
    pack_bundle,
    read_checksum_file,
)
from rformer_monai.workflows.errors import one_line

logger = logging.getLogger("rformer_monai.sharing")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rformer_monai.sharing", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    pack = commands.add_parser("pack", help="zip a bundle as <name>_v<version>.zip with its .sha256")
    pack.add_argument("--bundle", required=True, type=Path, help="the bundle folder")
    pack.add_argument("--output", required=True, type=Path, help="folder of the zip and its checksum")
    pack.add_argument("--name", help="bundle name (the zip's top folder); default the folder's name")

    fetch = commands.add_parser("fetch", help="download a packed bundle, verify its SHA-256, extract it safely")
    fetch.add_argument("--url", required=True, help="https://, http:// or file:// address of the zip")
    checksum = fetch.add_mutually_exclusive_group()
    checksum.add_argument("--sha256", help="the zip's SHA-256 hex digest")
    checksum.add_argument("--sha256_file", type=Path, help="a local .sha256 file (sha256sum format)")
    fetch.add_argument("--bundle_dir", required=True, type=Path, help="folder the bundle is extracted into")
    fetch.add_argument("--name", help="folder name of the bundle; default the zip's top folder")

    onnx = commands.add_parser("onnx", help="export the bundle's trained network to models/model.onnx")
    onnx.add_argument("--bundle", required=True, type=Path, help="the bundle folder")
    onnx.add_argument(
        "--config_file", nargs="+", type=Path, help="configs defining network_def (default inference.json)"
    )
    onnx.add_argument("--ckpt_path", type=Path, help="trained weights (default the configs' ckpt_path)")
    onnx.add_argument("--output", type=Path, help="the ONNX file (default models/model.onnx)")
    onnx.add_argument("--example_shape", nargs=4, type=int, default=list(DEFAULT_EXAMPLE_SHAPE), metavar="N")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    onnx.add_argument(
        "--override", nargs="*", type=parse_override, default=[], metavar="KEY=VALUE", help="config overrides"
    )

    check = commands.add_parser("check", help="check metadata.json against the bundle specification (offline)")
    check.add_argument("--bundle", required=True, type=Path, help="the bundle folder")
    return parser


EXIT_USER_ERROR = 1
USER_ERRORS = (ValueError, OSError, zipfile.BadZipFile)
"""What a bad argument, a failed download or a refused archive raises (``FetchError``, ``HashCheckError``,
``UnsafeArchiveError``, ``FileExistsError``, ``URLError``, ...): one line on stderr, not a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (1 after a user error, printed as ``error: ...`` on one line)."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _run(arguments)
    except USER_ERRORS as exc:
        logger.debug("%s failed", arguments.command, exc_info=exc)
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _run(arguments: argparse.Namespace) -> None:
    if arguments.command == "pack":
        packed = pack_bundle(arguments.bundle, arguments.output, arguments.name)
        print(f"{packed.archive}\n{packed.checksum_file}\nsha256 {packed.sha256} ({len(packed.files)} files)")
    elif arguments.command == "fetch":
        sha256 = read_checksum_file(arguments.sha256_file) if arguments.sha256_file else arguments.sha256
        print(fetch_bundle(arguments.url, arguments.bundle_dir, sha256=sha256, name=arguments.name))
    elif arguments.command == "onnx":
        path = export_bundle_onnx(
            arguments.bundle,
            config_file=arguments.config_file,
            ckpt_path=arguments.ckpt_path,
            output_path=arguments.output,
            example_shape=arguments.example_shape,
            opset_version=arguments.opset,
            override=dict(arguments.override),
        )
        print(path)
    elif arguments.command == "check":
        metadata = check_metadata(arguments.bundle / METADATA_PATH)
        print(f"{arguments.bundle / METADATA_PATH}: meets the bundle specification (version {metadata['version']})")


if __name__ == "__main__":
    sys.exit(main())
