"""Accuracy of the 3-D particle step on synthetic stacks whose truth is known.

    python benchmarks/volume_accuracy.py [--seeds 0 1 2 3] [--no_network] [--output reports/volume_accuracy.json]

For every seed and for isotropic (7.5 nm) and FIB-SEM-like (15 x 7.5 x 7.5 nm) spacing, one 40 x 128 x 128 stack
of the synthetic generator (6 separate particles, 30 % of them ellipsoids, and 2 touching sphere pairs) is scored
three ways: the measurement on the true labels; the instance step on a perfect probability (the true mask); and
the whole chain with the bundle's shipped network (inference.json, CPU). Particles match at IoU > 0.5; a touching
pair counts as split when both of its spheres are matched. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rformer_monai.volumes import label_instances_3d, make_synthetic_volume, measure_particles_3d

SPACINGS = {"isotropic 7.5 nm": (7.5, 7.5, 7.5), "15 x 7.5 x 7.5 nm": (15.0, 7.5, 7.5)}
EXTENT_SLICES_AT_15_NM = 40
IOU_THRESHOLD = 0.5
BUNDLE_ROOT = Path(__file__).resolve().parents[1] / "bundles" / "residualformer_sem"


def match(truth: np.ndarray, predicted: np.ndarray) -> dict[int, int]:
    """``{true label: predicted label}`` for pairs with IoU > 0.5 (unique)."""
    both = (truth > 0) & (predicted > 0)
    keys, overlaps = np.unique(truth[both].astype(np.int64) * (int(predicted.max()) + 1) + predicted[both],
                               return_counts=True)
    true_sizes = np.bincount(truth.ravel())
    predicted_sizes = np.bincount(predicted.ravel())
    pairs = {}
    for key, overlap in zip(keys, overlaps):
        true_label, predicted_label = divmod(int(key), int(predicted.max()) + 1)
        if overlap / (true_sizes[true_label] + predicted_sizes[predicted_label] - overlap) > IOU_THRESHOLD:
            pairs[true_label] = predicted_label
    return pairs


def score(volume, predicted: np.ndarray) -> dict:
    """Counts, pairs split and the ESD errors of the matched separate particles."""
    spacing = volume.spacing_nm
    matched = match(volume.labels, predicted)
    measured = measure_particles_3d(predicted, spacing)
    esd = dict(zip(measured["label"].tolist(), measured["esd_nm"].tolist()))
    separate = [particle for particle in volume.particles if particle["pair"] is None]
    spheres = [particle for particle in separate if particle["kind"] == "sphere"]
    errors = [esd[matched[p["label"]]] / p["esd_nm"] - 1 for p in separate if p["label"] in matched]
    sphere_errors = [esd[matched[p["label"]]] / p["esd_nm"] - 1 for p in spheres if p["label"] in matched]
    pairs = {particle["pair"] for particle in volume.particles if particle["pair"] is not None}
    split = sum(all(p["label"] in matched for p in volume.particles if p["pair"] == pair) for pair in pairs)
    return {
        "true": len(volume.particles), "found": int(predicted.max()), "matched": len(matched),
        "separate": len(separate), "separate_matched": sum(p["label"] in matched for p in separate),
        "pairs": len(pairs), "pairs_split": split,
        "max_abs_esd_error_spheres": max(map(abs, sphere_errors), default=float("nan")),
        "max_abs_esd_error_separate": max(map(abs, errors), default=float("nan")),
    }


def network_probability(image: np.ndarray, spacing, bundle) -> np.ndarray:
    import tempfile

    from rformer_monai.volumes import open_stack
    from rformer_monai.volumes.outputs import write_imagej_stack
    from rformer_monai.volumes.segment import predict_stack_probability

    with tempfile.TemporaryDirectory() as folder:
        path = write_imagej_stack(Path(folder) / "stack.tif", image, spacing)
        with open_stack(path) as source:
            output = np.zeros(source.shape, np.uint8)
            predict_stack_probability(source, output, bundle.network, bundle.inferer, bundle.device, bundle.amp,
                                      bundle.intensity, progress=False)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--no_network", action="store_true", help="skip the shipped network's rows")
    parser.add_argument("--output", type=Path, default=None, help="also write the rows as JSON")
    arguments = parser.parse_args()
    bundle = None
    if not arguments.no_network:
        from rformer_monai.inference.bundle import load_bundle_inference

        bundle = load_bundle_inference(BUNDLE_ROOT, override={"device": "cpu"})
    results = []
    for name, spacing in SPACINGS.items():
        shape = (round(EXTENT_SLICES_AT_15_NM * 15.0 / spacing[0]), 128, 128)
        for seed in arguments.seeds:
            volume = make_synthetic_volume(shape, spacing, seed=seed)
            rows = {"true labels": volume.labels,
                    "perfect probability": label_instances_3d((volume.labels > 0).astype(np.float32), spacing)}
            if bundle is not None:
                rows["shipped network"] = label_instances_3d(network_probability(volume.image, spacing, bundle), spacing)
            for step, predicted in rows.items():
                results.append({"spacing": name, "seed": seed, "step": step, **score(volume, predicted)})
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print("| spacing | step | true particles | found | matched (IoU > 0.5) | separate matched | touching pairs split "
          "| max ESD error, separate spheres | max ESD error, separate (ellipsoids too) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in SPACINGS:
        for step in ("true labels", "perfect probability", "shipped network"):
            group = [row for row in results if row["spacing"] == name and row["step"] == step]
            if not group:
                continue
            total = {key: sum(row[key] for row in group) for key in group[0] if isinstance(group[0][key], int)}
            worst = {key: max(row[key] for row in group) for key in group[0] if key.startswith("max_abs")}
            print(f"| {name} | {step} | {total['true']} | {total['found']} | {total['matched']} | "
                  f"{total['separate_matched']} / {total['separate']} | {total['pairs_split']} / {total['pairs']} | "
                  f"{100 * worst['max_abs_esd_error_spheres']:.2f} % | {100 * worst['max_abs_esd_error_separate']:.2f} % |")
    if arguments.output:
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
