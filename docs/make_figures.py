"""Draw the README's overlay picture: the shipped bundle's inference on a synthetic micrograph (the BAM images
may not be redistributed, nor pictures of them).

    python docs/make_figures.py      # writes docs/images/overlay.png
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tifffile
from monai.bundle import ConfigWorkflow

from rformer_monai.data.synthetic import SYNTHETIC_PIXEL_SIZE_NM, render_micrograph

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE = REPOSITORY / "bundles" / "residualformer_sem"
FIGURE = REPOSITORY / "docs" / "images" / "overlay.png"
IMAGE_SIZE = (576, 768)  # (height, width), data bar included
DATA_BAR_ROWS = 48
SEED = 3
NM_PER_CM = 1e7  # TIFF resolution unit: pixels per centimetre


def main() -> None:
    image, _ = render_micrograph(IMAGE_SIZE, SEED, data_bar_rows=DATA_BAR_ROWS)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in" / "synthetic.tif"
        source.parent.mkdir()
        pixels_per_cm = NM_PER_CM / SYNTHETIC_PIXEL_SIZE_NM
        tifffile.imwrite(source, image, resolution=(pixels_per_cm, pixels_per_cm), resolutionunit="CENTIMETER")
        workflow = ConfigWorkflow(
            config_file=str(BUNDLE / "configs" / "inference.json"),
            workflow_type="infer",
            bundle_root=str(BUNDLE),
            dataset_dir=str(source),
            output_dir=str(Path(scratch) / "out"),
            device="cpu",
            crop_bottom=DATA_BAR_ROWS,  # the synthetic bar is noisy, unlike an instrument's: name its rows
        )
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(scratch) / "out" / "synthetic_overlay.png", FIGURE)
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
