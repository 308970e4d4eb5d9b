"""K-fold cross-validation through the bundle's own training and evaluation workflows.

    python -m research.cv run --dataset_dir ../shared/data/bam-tio2-sem --output_dir reports/cv/residualformer
    python -m research.cv run ... --config configs/basicunet.json       # another network, same folds
    python -m research.cv baseline --method otsu ...                      # classical baselines, same folds
    python -m research.cv compare reports/cv/* --output reports/cv/comparison.md

Every fold trains with the bundle's ``train.json`` (one training path, no second loop) and is scored
with its ``evaluate.json`` on the held-out images (data bar excluded). The report folder holds per-fold
metrics, mean and std over folds, the pooled confusion matrix and classification report, learning
curves, a confusion-matrix picture and overlays of predictions against the truth.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rformer_monai.files import write_atomic
from rformer_monai.inference.bundle import parse_override
from rformer_monai.metrics.segmentation import (
    SCORE_NAMES,
    ConfusionCounts,
    classification_report_from_confusion,
    plot_confusion_matrix,
    scores_from_confusion,
)
from rformer_monai.workflows.checkpoints import BEST_MODEL_FILENAME
from rformer_monai.workflows.particle_handlers import INSTANCE_METRICS_NAME

logger = logging.getLogger("research.cv")

BUNDLE_CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "residualformer_sem" / "configs"
FOLD_METRICS = ("dice", "iou", "precision", "recall", "accuracy", "f1", "auc")
INSTANCE_FOLD_METRICS = ("f1", "pq", "count_error", "median_ecd_error")
PER_IMAGE_ERRORS = ("count_error", "median_ecd_error")
PER_IMAGE_PERCENTILES = (10, 50, 90)  # the spread of an error over the held-out images
MICROGRAPH_SHAPE = (768, 1024)  # the timing image: one SEM frame
TILE_SHAPE = (256, 256)  # the complexity tile
TIMING_REPEATS = 3
OVERLAYS_PER_FOLD = 2
RUN_ONLY_SETTINGS = ("resume_from",)  # how one fold's training was restarted: not part of the recipe
SPLIT_RECORD_NAME = "split.json"  # the fold's split, written when it trains, checked when it is scored


def fold_folder(cv_dir: Path | str, fold: int) -> Path:
    """The folder of ``fold`` in the CV folder ``cv_dir``: its model, split record and scores."""
    return Path(cv_dir) / f"fold_{fold}"


def _workflow(config_files: Sequence[Path | str], workflow_type: str, overrides: dict[str, Any]):
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(BUNDLE_CONFIGS / "metadata.json"),
        logging_file=None,
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    return workflow


def _fold_overrides(fold: int, dataset_dir: str, fold_dir: Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "bundle_root": str(fold_dir),
        "dataset_dir": dataset_dir,
        "fold": fold,
        "ckpt_dir": str(fold_dir),
        "output_dir": str(fold_dir / "runs"),
        "pretrained": None,  # every fold from scratch: the shipped weights have seen the held-out images
        **(overrides or {}),
    }


def held_out_images(held_out: Sequence[Mapping[str, Any]]) -> list[str]:
    """The sorted file names of the images of a held-out datalist, as a fold's ``split.json`` records them."""
    return sorted(Path(item["image"]).name for item in held_out)


def _held_out_split(workflow) -> dict[str, Any]:
    """The split a fold workflow was set up with: its seed, fold count and held-out image file names."""
    return {
        "split_seed": workflow.parser.get_parsed_content("split_seed"),
        "num_folds": workflow.parser.get_parsed_content("num_folds"),
        "held_out_images": held_out_images(workflow.parser.get_parsed_content("datalists")["validation"]),
    }


def trained_folds(cv_dir: Path, folds: Sequence[int] | None = None) -> list[int]:
    """The folds of ``cv_dir`` that have a ``model.pt``, or only ``folds`` (each checked to have one).

    Raises:
        FileNotFoundError: when no fold, or one of ``folds``, has a ``model.pt``.
    """
    trained = sorted(int(path.parent.name.split("_")[1]) for path in cv_dir.glob(f"fold_*/{BEST_MODEL_FILENAME}"))
    if not trained:
        raise FileNotFoundError(f"{cv_dir}: no fold_*/model.pt (run 'python -m research.cv run' first).")
    untrained = sorted(set(folds or ()) - set(trained))
    if untrained:
        raise FileNotFoundError(f"{cv_dir}: no model.pt for fold(s) {untrained}; trained folds: {trained}.")
    return sorted(set(folds)) if folds else trained


def recorded_split(fold_dir: Path) -> dict[str, Any] | None:
    """The split a fold's model was trained with (its ``split.json``: seed, fold count, held-out image file
    names), or None for a fold trained before the record existed."""
    record_path = fold_dir / SPLIT_RECORD_NAME
    return json.loads(record_path.read_text()) if record_path.is_file() else None


def _check_split(fold_dir: Path, workflow) -> None:
    """Raise when the fold's model was trained on a split other than the one ``workflow`` holds out: its
    held-out images would include images it trained on. Folds trained before the record existed pass."""
    recorded = recorded_split(fold_dir)
    if recorded is None:
        return
    current = _held_out_split(workflow)
    if recorded["held_out_images"] != current["held_out_images"]:
        raise ValueError(
            f"{fold_dir}: the model was trained with split_seed {recorded['split_seed']} and "
            f"{recorded['num_folds']} folds, but this evaluation holds out other images (split_seed "
            f"{current['split_seed']}, {current['num_folds']} folds): pass --set split_seed={recorded['split_seed']}."
        )


def train_fold(
    fold: int,
    dataset_dir: str,
    output_dir: Path,
    extra_configs: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Train on every fold but ``fold`` with the bundle's train.json; the weights land in the fold's folder.

    Validation runs once, after the last epoch (``val_interval = max_epochs``), so that no epoch is
    chosen on the held-out images.

    Returns:
        The fold's folder, holding ``model.pt``, ``history.csv`` and ``split.json`` (the held-out images).
    """
    fold_dir = fold_folder(output_dir, fold)
    train = _workflow(
        [BUNDLE_CONFIGS / "train.json", *extra_configs],
        "train",
        {
            **_fold_overrides(fold, dataset_dir, fold_dir, overrides),
            "val_interval": "@max_epochs",
            "train#epoch_summary_handler#history_path": str(fold_dir / "history.csv"),
        },
    )
    record = json.dumps(_held_out_split(train), indent=2)
    write_atomic(fold_dir / SPLIT_RECORD_NAME, lambda path: path.write_text(record))
    train.run()
    train.finalize()
    return fold_dir


def evaluate_fold(
    fold: int,
    dataset_dir: str,
    output_dir: Path,
    extra_configs: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Score the fold's ``model.pt`` on its held-out images with the bundle's evaluate.json: pixel and
    particle metrics, and overlays of the first images.

    Returns:
        The fold's folder, holding ``metrics.json``/``.csv``, ``instance_metrics.json`` and ``overlays/``.
    """
    fold_dir = fold_folder(output_dir, fold)
    evaluate = fold_evaluation(
        fold,
        dataset_dir,
        output_dir,
        extra_configs,
        {
            **(overrides or {}),
            "validate#overlay_handler": {
                "_target_": "rformer_monai.workflows.PredictionOverlayHandler",
                "output_dir": str(fold_dir / "overlays"),
                "max_images": OVERLAYS_PER_FOLD,
            },
            "validate#handlers": ["@validate#report_handler", "@validate#instance_handler", "@validate#overlay_handler"],
        },
    )
    evaluate.run()
    evaluate.finalize()
    return fold_dir


def fold_evaluation(
    fold: int,
    dataset_dir: str,
    output_dir: Path,
    extra_configs: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
):
    """The bundle's evaluate.json workflow (initialised, not run) on the fold's held-out images with the
    fold's ``model.pt``; ``overrides`` (for example ``validate#handlers``) are applied last.

    Raises:
        ValueError: when these held-out images are not those the fold's ``split.json`` recorded in training.
    """
    fold_dir = fold_folder(output_dir, fold)
    workflow = _workflow(
        [BUNDLE_CONFIGS / "train.json", BUNDLE_CONFIGS / "evaluate.json", *extra_configs],
        "eval",
        {
            **_fold_overrides(fold, dataset_dir, fold_dir, None),
            "ckpt_path": str(fold_dir / BEST_MODEL_FILENAME),
            "eval_dir": str(fold_dir),
            "validate#dataset#data": "$@datalists['validation']",
            **(overrides or {}),
        },
    )
    _check_split(fold_dir, workflow)
    return workflow


def inference_config(extra_configs: Sequence[str | Path] = (), overrides: dict[str, Any] | None = None):
    """The bundle's inference.json with the keys of ``extra_configs`` that it has (the keys that configure
    training only, such as ``train#...``, are left out), ``overrides`` set last (a MONAI ``ConfigParser``,
    nothing parsed yet)."""
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    parser = ConfigParser()
    parser.read_config(str(BUNDLE_CONFIGS / "inference.json"))
    for extra in extra_configs:
        content = ConfigParser.load_config_file(str(extra))
        parser.update({key: value for key, value in content.items() if ReferenceResolver.split_id(key)[0] in parser.config})
    parser.update(overrides or {})
    return parser


def network_cost(extra_configs: Sequence[str] = (), overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameters, GMACs per 256x256 tile and CPU seconds per 1024x768 micrograph (with inference.json's own
    sliding-window inferer) of the network that the given configs define."""
    from rformer_monai.networks.complexity import count_macs, count_parameters

    parser = inference_config(extra_configs, overrides)
    network = parser.get_parsed_content("network_def").eval()
    inferer = parser.get_parsed_content("inferer")
    image = torch.rand(1, 1, *MICROGRAPH_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        inferer(image, network)  # warm-up
        start = time.perf_counter()
        for _ in range(TIMING_REPEATS):
            inferer(image, network)
    seconds = (time.perf_counter() - start) / TIMING_REPEATS
    return {
        "parameters": count_parameters(network),
        "gmacs_per_tile": count_macs(network, (1, 1, *TILE_SHAPE)) / 1e9,
        "seconds_per_micrograph": seconds,
        "torch_threads": torch.get_num_threads(),
        "network_def": parser["network_def"],
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the values that are not None or NaN (std NaN below two)."""
    array = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def summarize(output_dir: Path, name: str, method: dict[str, Any] | None = None) -> dict[str, Any]:
    """Gather the folds' metrics.json into ``cv_summary.json``, ``cv_folds.csv``, ``cv_report.md`` and
    pictures (confusion matrix, learning curves)."""
    fold_dirs = sorted(p for p in output_dir.glob("fold_*") if (p / "metrics.json").is_file())
    if not fold_dirs:
        raise ValueError(f"{output_dir}: no fold_*/metrics.json found: run the folds first.")
    folds, counts = [], ConfusionCounts(0, 0, 0, 0)
    for fold_dir in fold_dirs:
        metrics = json.loads((fold_dir / "metrics.json").read_text())
        pooled = metrics["pooled"]
        folds.append({"fold": fold_dir.name, **{key: pooled.get(key) for key in FOLD_METRICS}})
        counts = counts + ConfusionCounts(pooled["tp"], pooled["fp"], pooled["fn"], pooled["tn"])
    summary: dict[str, Any] = {
        "name": name,
        "num_folds": len(folds),
        "folds": folds,
        "mean": {},
        "std": {},
        "pooled": scores_from_confusion(counts),
        "confusion_matrix": counts.matrix(),
        "classification_report": classification_report_from_confusion(counts),
        "method": method or {},
    }
    for key in FOLD_METRICS:
        summary["mean"][key], summary["std"][key] = _mean_std([fold[key] for fold in folds])
    instances = _instance_summary(fold_dirs)
    if instances:
        summary["instances"] = instances
    (output_dir / "cv_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    with (output_dir / "cv_folds.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["fold", *FOLD_METRICS])
        writer.writeheader()
        writer.writerows(folds)
        writer.writerow({"fold": "mean", **summary["mean"]})
        writer.writerow({"fold": "std", **summary["std"]})
    plot_confusion_matrix(output_dir / "confusion_matrix.png", counts, f"{name}: pooled pixel confusion matrix")
    _plot_learning_curves(output_dir / "learning_curves.png", fold_dirs, name)
    (output_dir / "cv_report.md").write_text(_report_markdown(summary))
    logger.info(
        "%s: mean Dice %.4f +/- %.4f over %d folds", name, summary["mean"]["dice"], summary["std"]["dice"], len(folds)
    )
    return summary


def _pooled_detection(per_fold: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """F1 and count error of the folds' pooled particle scores, over all their held-out images."""
    tp, fp, fn = (sum(fold[key] for fold in per_fold) for key in ("tp", "fp", "fn"))
    predicted, true = sum(fold["pred_count"] for fold in per_fold), sum(fold["true_count"] for fold in per_fold)
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "count_error": predicted / true - 1 if true else math.nan,
        "pred_count": predicted,
        "true_count": true,
    }


def per_image_spread(images: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The spread of the count and median-ECD errors (:data:`PER_IMAGE_ERRORS`) over held-out images: their
    10th, 50th and 90th percentiles and standard deviation (images without a value, e.g. no particle found,
    left out), with the number of images."""
    spread = {}
    for key in PER_IMAGE_ERRORS:
        values = np.asarray([image[key] for image in images if image.get(key) is not None and not math.isnan(image[key])])
        if values.size:
            percentiles = np.percentile(values, PER_IMAGE_PERCENTILES)
            spread[key] = {**{f"p{p}": float(v) for p, v in zip(PER_IMAGE_PERCENTILES, percentiles)},
                           "std": float(values.std(ddof=1)) if values.size > 1 else math.nan, "images": int(values.size)}
    return spread


def _instance_summary(fold_dirs: Sequence[Path]) -> dict[str, Any]:
    """Particle scores of the folds that have them: mean and std over folds of F1, PQ, count and median-ECD
    errors, F1 and count error pooled over all held-out images, and pooled likewise against the true
    particles of at least the particle step's smallest size (``measurable``, where every fold has it); empty
    when no fold has any."""
    reports = [
        json.loads((fold_dir / INSTANCE_METRICS_NAME).read_text())
        for fold_dir in fold_dirs
        if (fold_dir / INSTANCE_METRICS_NAME).is_file()
    ]
    if not reports:
        return {}
    per_fold = [report["pooled"] for report in reports]
    mean_std = {key: _mean_std([fold[key] for fold in per_fold]) for key in INSTANCE_FOLD_METRICS}
    summary = {
        "num_folds": len(per_fold),
        "mean": {key: value[0] for key, value in mean_std.items()},
        "std": {key: value[1] for key, value in mean_std.items()},
        "pooled": _pooled_detection(per_fold),
        "per_image": per_image_spread([image for report in reports for image in report["per_image"]]),
    }
    measurable = [report.get("measurable") for report in reports]
    if all(measurable) and len({fold["min_size_px"] for fold in measurable}) == 1:
        summary["measurable"] = {
            "min_size_px": measurable[0]["min_size_px"],
            "pooled": _pooled_detection([fold["pooled"] for fold in measurable]),
        }
    return summary


def _plot_learning_curves(path: Path, fold_dirs: Sequence[Path], name: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    drawn = False
    for fold_dir in fold_dirs:
        history = fold_dir / "history.csv"
        if not history.is_file():
            continue
        with history.open() as handle:
            rows = list(csv.DictReader(handle))
        axes.plot([int(r["epoch"]) for r in rows], [float(r["train_loss"]) for r in rows], label=fold_dir.name)
        drawn = True
    if not drawn:
        return
    axes.set_xlabel("epoch")
    axes.set_ylabel("training loss (the bundle's loss function)")
    axes.set_title(f"{name}: learning curves")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _format(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _report_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Cross-validation: {summary['name']}", "", "| fold | " + " | ".join(FOLD_METRICS) + " |"]
    lines.append("|---" * (len(FOLD_METRICS) + 1) + "|")
    for fold in summary["folds"]:
        lines.append(f"| {fold['fold']} | " + " | ".join(_format(fold[k]) for k in FOLD_METRICS) + " |")
    lines.append(
        "| mean ± std | "
        + " | ".join(f"{_format(summary['mean'][k])} ± {_format(summary['std'][k])}" for k in FOLD_METRICS)
        + " |"
    )
    tn_fp, fn_tp = summary["confusion_matrix"]
    lines += [
        "",
        "Pooled confusion matrix (rows: truth, columns: prediction; background, particle):",
        "",
        f"    [[{tn_fp[0]}, {tn_fp[1]}],",
        f"     [{fn_tp[0]}, {fn_tp[1]}]]",
        "",
        "Pooled scores: " + ", ".join(f"{k} {_format(summary['pooled'][k])}" for k in SCORE_NAMES),
        "",
    ]
    recipe = summary["method"].get("recipe")
    if recipe:
        configs = ", ".join(recipe["configs"]) or "none"
        overrides = ", ".join(f"{key}={json.dumps(value)}" for key, value in recipe["overrides"].items())
        lines += [f"Recipe: the bundle's train.json and evaluate.json; merged: {configs}; overrides: {overrides}.", ""]
    instances = summary.get("instances")
    if instances:
        lines += [
            "Particles (IoU > 0.5 against the 4-connected true particles), mean ± std over folds: "
            + ", ".join(
                f"{k} {_format(instances['mean'][k])} ± {_format(instances['std'][k])}" for k in INSTANCE_FOLD_METRICS
            )
            + f"; pooled F1 {_format(instances['pooled']['f1'])}, {instances['pooled']['pred_count']} particles "
            f"found of {instances['pooled']['true_count']} (count error {_format(instances['pooled']['count_error'])}).",
            "",
        ]
        lines += [
            f"Per held-out image ({spread['images']} images), {key}: median {spread['p50']:+.1%}, 10th to 90th "
            f"percentile {spread['p10']:+.1%} to {spread['p90']:+.1%}, sd {spread['std']:.1%}."
            for key, spread in instances.get("per_image", {}).items()
        ]
        lines += [""] if instances.get("per_image") else []
        measurable = instances.get("measurable")
        if measurable:
            lines += [
                f"Against the {measurable['pooled']['true_count']} true particles of at least {measurable['min_size_px']} px "
                "(the particle step's smallest size; the rest are slivers a few pixels wide between the masks' lines): "
                f"pooled F1 {_format(measurable['pooled']['f1'])}, count error {_format(measurable['pooled']['count_error'])}.",
                "",
            ]
    return "\n".join(lines)


def compare(summary_dirs: Sequence[Path], output: Path) -> str:
    """A markdown table of several cross-validations side by side (mean ± std over folds, cost)."""
    header = (
        "| method | folds | Dice | IoU | precision | recall | AUC | particle F1 (pooled) | count error (pooled) "
        "| median-ECD error | parameters | GMACs / 256² tile | s / 1024x768 (CPU) |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for folder in summary_dirs:
        summary_file = Path(folder) / "cv_summary.json"
        if not summary_file.is_file():
            continue
        summary = json.loads(summary_file.read_text())
        method = summary.get("method", {})
        cells = [str(summary["num_folds"])]
        cells += [f"{_format(summary['mean'][k])} ± {_format(summary['std'][k])}" for k in ("dice", "iou", "precision", "recall", "auc")]
        instances = _instance_summary(sorted(Path(folder).glob("fold_*")))
        if instances:
            cells += [
                _format(instances["pooled"]["f1"]),
                f"{instances['pooled']['count_error']:+.1%}",
                f"{_format(instances['mean']['median_ecd_error'])} ± {_format(instances['std']['median_ecd_error'])}",
            ]
        else:
            cells += ["-", "-", "-"]
        parameters = method.get("parameters")
        gmacs = method.get("gmacs_per_tile")
        seconds = method.get("seconds_per_micrograph")
        cells += [
            f"{parameters:,}" if parameters else "-",
            f"{gmacs:.2f}" if gmacs else "-",
            f"{seconds:.2f}" if seconds else "-",
        ]
        lines.append(f"| {summary['name']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    return table


def recipe_record(configs: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe a CV folder's summary records: the merged config files and the overrides, less those that
    only say how one fold's training was restarted (:data:`RUN_ONLY_SETTINGS`)."""
    return {"configs": list(configs), "overrides": {k: v for k, v in overrides.items() if k not in RUN_ONLY_SETTINGS}}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m research.cv", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and evaluate a network on every fold")
    baseline = commands.add_parser("baseline", help="evaluate a classical baseline on every fold")
    for sub in (run, baseline):
        sub.add_argument("--dataset_dir", required=True)
        sub.add_argument("--output_dir", required=True, type=Path)
        sub.add_argument("--num_folds", type=int, default=5)
        sub.add_argument("--seed", type=int, default=0, help="seed of the fold split (and of the weights unless --set seed=N)")
        sub.add_argument("--folds", type=int, nargs="*", help="only these folds (default: all)")
        sub.add_argument("--name", help="the method's name in reports (default: the output folder's name)")
    run.add_argument("--config", action="append", default=[], help="override file merged onto the bundle configs")
    run.add_argument("--evaluate_only", action="store_true", help="re-score the folds' existing model.pt")
    run.add_argument("--set", action="append", default=[], type=parse_override, help="key=value override (JSON value), e.g. max_epochs=20")
    baseline.add_argument("--method", choices=("otsu", "fixed_threshold"), required=True)
    comparison = commands.add_parser("compare", help="side-by-side markdown table of cross-validations")
    comparison.add_argument("folders", nargs="+", type=Path)
    comparison.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.command == "compare":
        print(compare(args.folders, args.output))  # the table is this command's output, not a log line
        return 0
    name = args.name or args.output_dir.name
    folds = args.folds if args.folds else list(range(args.num_folds))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.command == "baseline":
        from research.baselines import evaluate_baseline_fold

        for fold in folds:
            evaluate_baseline_fold(args.method, args.dataset_dir, fold_folder(args.output_dir, fold), fold, args.num_folds, args.seed)
        summarize(args.output_dir, name, {"method": args.method})
        return 0
    overrides = {"num_folds": args.num_folds, "seed": args.seed, "split_seed": args.seed, **dict(args.set)}
    for fold in folds:
        logger.info("fold %d of %d", fold, args.num_folds)
        if not args.evaluate_only:
            train_fold(fold, args.dataset_dir, args.output_dir, args.config, overrides)
        evaluate_fold(fold, args.dataset_dir, args.output_dir, args.config, overrides)
    method = network_cost(args.config, {k: v for k, v in overrides.items() if k.startswith("network_def")})
    summarize(args.output_dir, name, {**method, "recipe": recipe_record(args.config, overrides)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
