"""Particle contrast, measured (issue 36, points 1, 2 and 5): the shipped weights, zero-shot, on the BAM
TiO2 SEM images (bright particles) and on their inverses (dark particles on a bright film, a proxy for
transmission SEM), with ``contrast="auto"``; Otsu (dark = particle) on the inverses; the auto decision's
accuracy and cost; the Dice between the mask of an image and the mask of its inverse; and the trust
statistics (foreground fraction, probability margin, contrast score) with the right and with a forced wrong
contrast.

The inverted copies (and synthetic micrographs of either contrast) are written under ``--work_dir``, never
into the repository: the BAM images are CC BY-NC-ND. An image whose decision-corrected network input is bit
for bit one already segmented (an inverse read as dark) reuses that probability instead of a second
inference; ``inferences_reused`` counts them.

    python research/contrast_check.py --dataset_dir ../shared/data/bam-tio2-sem --work_dir /tmp/contrast_check
    # the bundle itself on the inverted copies, then their pooled Dice:
    python -m monai.bundle run --config_file bundles/residualformer_sem/configs/inference.json \
        --bundle_root bundles/residualformer_sem --dataset_dir /tmp/contrast_check/inverted \
        --output_dir /tmp/contrast_check/bundle_inverted
    python research/contrast_check.py --score_bundle_masks /tmp/contrast_check/bundle_inverted
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from monai.bundle import ConfigParser

from research.baselines import otsu_mask
from rformer_monai.data.discovery import discover_pairs
from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.networks import load_weights
from rformer_monai.transforms.contrast import CONTRAST_KEY, CONTRAST_SCORE_KEY, decide_contrast
from rformer_monai.transforms.pipelines import validation_transforms
from rformer_monai.trust import trust_statistics, trust_warning

logger = logging.getLogger("contrast_check")
BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "residualformer_sem"
GREY_MAX = 255
SYNTHETIC_SIZE = (512, 512)


def write_inverted(pairs: list[dict[str, str]], folder: Path) -> list[dict[str, str]]:
    """8-bit inverses (255 - x, data bar included) of the images, beside the original masks."""
    folder.mkdir(parents=True, exist_ok=True)
    inverted = []
    for pair in pairs:
        path = folder / Path(pair["image"]).name
        if not path.exists():
            image = tifffile.imread(pair["image"])
            tifffile.imwrite(path, (GREY_MAX - image.astype(np.int16)).astype(np.uint8))
        inverted.append({"image": str(path), "label": pair["label"]})
    return inverted


def write_synthetic(count: int, folder: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``count`` synthetic SEM micrographs (bright particles) and their inverses (dark particles on a bright
    film), 512x512, with their masks."""
    bright, dark = [], []
    for folder_name in ("bright", "dark", "masks"):
        (folder / folder_name).mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        image, mask = render_micrograph(SYNTHETIC_SIZE, rng=seed)
        name = f"synthetic_{seed:02d}.tif"
        tifffile.imwrite(folder / "bright" / name, image)
        tifffile.imwrite(folder / "dark" / name, (GREY_MAX - image.astype(np.int16)).astype(np.uint8))
        tifffile.imwrite(folder / "masks" / name, mask)
        bright.append({"image": str(folder / "bright" / name), "label": str(folder / "masks" / name)})
        dark.append({"image": str(folder / "dark" / name), "label": str(folder / "masks" / name)})
    return bright, dark


def pooled_dice(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    overlap = sum(int(np.logical_and(p, t).sum()) for p, t in pairs)
    total = sum(int(p.sum()) + int(t.sum()) for p, t in pairs)
    return 2.0 * overlap / total if total else 1.0


def run(
    pairs, network, inferer, contrast: str, threshold: float, truth_polarity: str, cache: dict, flatten: bool = False
) -> dict:
    """Segment every pair with the shipped weights; ``cache`` maps a network input (its bytes) to the
    probability already computed for it: an inverse whose decision-corrected input is bit for bit the
    original's gets the same probability without a second inference (``reused`` in its result)."""
    transforms = validation_transforms(contrast=contrast, flatten_background=flatten)
    results, masks, decision_s, inference_s = [], {}, 0.0, 0.0
    for pair in pairs:
        start = time.perf_counter()
        item = transforms(pair)
        image = item["image"]
        key = hashlib.sha256(image.as_tensor().numpy().tobytes()).hexdigest()
        reused = key in cache
        if not reused:
            with torch.no_grad():
                start_inference = time.perf_counter()
                cache[key] = torch.sigmoid(inferer(image[None], network))[0, 0].numpy()
                inference_s += time.perf_counter() - start_inference
        probability = cache[key]
        start_decision = time.perf_counter()
        decide_contrast(image)
        decision_s += time.perf_counter() - start_decision
        truth = item["label"][0].numpy() > 0
        mask = probability > threshold
        name = Path(pair["image"]).stem
        masks[name] = mask
        statistics = trust_statistics(probability, float(image.meta[CONTRAST_SCORE_KEY]), threshold)
        results.append({
            "name": name, "decision": image.meta[CONTRAST_KEY], "correct": image.meta[CONTRAST_KEY] == truth_polarity,
            **statistics, "warning": trust_warning(statistics),
            "dice": pooled_dice([(mask, truth)]), "seconds": time.perf_counter() - start, "reused": reused,
        })
        logger.info("%s %s: %s", contrast, name, results[-1])
    return {"results": results, "masks": masks, "decision_s": decision_s, "inference_s": inference_s}


def score_bundle_masks(pairs: list[dict[str, str]], mask_dir: Path) -> dict:
    """Pooled Dice of the bundle's ``<stem>_mask.tif`` in ``mask_dir`` against the true masks, over the rows
    above the data bar, and the contrast and warning columns of its ``summary.csv``."""
    scored = []
    for pair in pairs:
        truth = validation_transforms(contrast="bright")(pair)["label"][0].numpy() > 0
        mask = tifffile.imread(mask_dir / f"{Path(pair['image']).stem}_mask.tif")[: truth.shape[0]] > 0
        scored.append((mask, truth))
    with open(mask_dir / "summary.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["stem"] != "pooled"]
    return {
        "pooled_dice": pooled_dice(scored),
        "contrast": sorted({row["contrast"] for row in rows}),
        "flagged": sum(bool(row["warning"]) for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", default="../shared/data/bam-tio2-sem")
    parser.add_argument("--work_dir", default="/tmp/contrast_check")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--score_bundle_masks", default=None,
        help="only score the masks a bundle run wrote to this folder for the inverted images, then stop",
    )
    parser.add_argument("--flatten_background", action="store_true", help="subtract a smooth background first")
    parser.add_argument("--synthetic", type=int, default=8, help="synthetic micrographs of either contrast")
    parser.add_argument(
        "--forced_limit", type=int, default=10, help="images of the forced wrong contrast run (0: none)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    work_dir = Path(args.work_dir)

    config = ConfigParser()
    config.read_config(str(BUNDLE / "configs" / "inference.json"))
    config["bundle_root"] = str(BUNDLE)
    network = load_weights(config.get_parsed_content("network_def"), BUNDLE / "models" / "model.pt").eval()
    inferer = config.get_parsed_content("inferer")
    threshold = float(config.get_parsed_content("threshold"))

    pairs = discover_pairs(args.dataset_dir)[: args.limit]
    inverted = write_inverted(pairs, work_dir / "inverted")
    if args.score_bundle_masks:
        logger.info("bundle masks: %s", score_bundle_masks(inverted, Path(args.score_bundle_masks)))
        return
    report = {}
    runs = {"bam_auto": (pairs, "auto", "bright"), "inverted_auto": (inverted, "auto", "dark")}
    if args.synthetic:
        synthetic_bright, synthetic_dark = write_synthetic(args.synthetic, work_dir / "synthetic")
        runs["synthetic_bright_auto"] = (synthetic_bright, "auto", "bright")
        runs["synthetic_dark_auto"] = (synthetic_dark, "auto", "dark")
    if args.forced_limit:
        runs["inverted_forced_bright"] = (inverted[: args.forced_limit], "bright", "dark")
    outputs, cache = {}, {}
    for name, (data, contrast, polarity) in runs.items():
        start = time.perf_counter()
        outputs[name] = run(data, network, inferer, contrast, threshold, polarity, cache, args.flatten_background)
        results = outputs[name]["results"]
        truth = {}
        for pair in data:
            item = validation_transforms(contrast="bright")({"image": pair["image"], "label": pair["label"]})
            truth[Path(pair["image"]).stem] = item["label"][0].numpy() > 0
        report[name] = {
            "pooled_dice": pooled_dice([(outputs[name]["masks"][r["name"]], truth[r["name"]]) for r in results]),
            "decision_accuracy": float(np.mean([r["correct"] for r in results])),
            "flagged": sum(bool(r["warning"]) for r in results),
            "images": len(results),
            "inferences_reused": sum(r["reused"] for r in results),
            "wall_s": time.perf_counter() - start,
            "inference_s": outputs[name]["inference_s"],
            "decision_s": outputs[name]["decision_s"],
            "per_image": results,
        }
        logger.info("%s: %s", name, {k: v for k, v in report[name].items() if k != "per_image"})

    masks, inverse_masks = outputs["bam_auto"]["masks"], outputs["inverted_auto"]["masks"]
    symmetry = {name: pooled_dice([(masks[name], inverse_masks[name])]) for name in masks}
    report["mask_vs_inverse_dice"] = {"min": min(symmetry.values()), "per_image": symmetry}

    dark_sets = {"otsu_inverted": inverted, "otsu_synthetic_dark": synthetic_dark if args.synthetic else []}
    for name, dark_pairs in dark_sets.items():
        start = time.perf_counter()
        otsu_pairs = []
        for pair in dark_pairs:
            item = validation_transforms(intensity="none", contrast="bright")(pair)
            image = item["image"][0].numpy()
            # dark = particle: Otsu's mask (holes filled, small objects removed) of the grey values turned round
            otsu_pairs.append((otsu_mask(image.max() + image.min() - image), item["label"][0].numpy() > 0))
        report[name] = {"pooled_dice": pooled_dice(otsu_pairs), "wall_s": time.perf_counter() - start}
    logger.info("mask vs inverse Dice min %.4f; Otsu %s", report["mask_vs_inverse_dice"]["min"],
                {name: report[name] for name in dark_sets})
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "contrast_check.json").write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
