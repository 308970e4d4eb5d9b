"""Helpers of the sharing tests: the tiny network, bundle copies, small micrographs and the inference workflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import tifffile
from monai.bundle import ConfigWorkflow
from tiny_bundle_network import BUNDLE, TINY_NETWORK, TINY_RUN

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.sharing import bundle_files


def copy_bundle(destination: Path) -> Path:
    """Copy the bundle's shippable files (configs, docs, licence; no run outputs) to ``destination``."""
    for relative in bundle_files(BUNDLE):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUNDLE / relative, target)
    return destination


def write_micrograph(folder: Path, name: str = "grains", size: tuple[int, int] = (100, 130), seed: int = 3) -> Path:
    """A small synthetic SEM micrograph (no data bar) as ``folder/<name>.tif``."""
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = render_micrograph(size, rng=seed, mean_diameter_px=10.0)
    path = folder / f"{name}.tif"
    tifffile.imwrite(path, image)
    return path


def run_inference(
    bundle: Path, inputs: Path, output_dir: Path, extra_configs: tuple[str, ...] = (), **override
) -> None:
    """Run the bundle's inference workflow (plus override files from its configs folder) with the tiny network."""
    configs = [bundle / "configs" / "inference.json", *(bundle / "configs" / name for name in extra_configs)]
    workflow = ConfigWorkflow(
        config_file=[str(path) for path in configs],
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=None,
        workflow_type="infer",
        bundle_root=str(bundle),
        dataset_dir=str(inputs),
        output_dir=str(output_dir),
        **TINY_NETWORK,
        **TINY_RUN,
        **override,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
