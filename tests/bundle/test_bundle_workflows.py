"""The bundle's real workflows (train, evaluate, infer) run through monai.bundle on tiny data in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from dataset_helpers import write_labelled_dataset
from monai.bundle import ConfigParser, ConfigWorkflow
from tiny_bundle_network import BUNDLE, TINY_NETWORK, TINY_RUN

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.workflows.settings import RULES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = BUNDLE / "configs"
PROJECT_CONFIGS = PROJECT_ROOT / "configs"  # the override files beside the bundle
RESEARCH_CONFIGS = PROJECT_ROOT / "research" / "configs"  # the experiments' overrides


def _workflow(config_files: list[Path], workflow_type: str, **override) -> ConfigWorkflow:
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=None,
        workflow_type=workflow_type,
        **override,
    )
    workflow.initialize()
    return workflow


@pytest.mark.slow
def test_training_writes_best_model_and_resumable_checkpoint(tmp_path):
    dataset = write_labelled_dataset(tmp_path / "data")
    override = {**TINY_NETWORK, **TINY_RUN, "bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(dataset)}
    workflow = _workflow([CONFIGS / "train.json"], "train", max_epochs=2, num_folds=2, crops_per_image=2, **override)
    workflow.run()
    workflow.finalize()
    (run,) = (tmp_path / "bundle" / "runs").iterdir()  # a new run folder, named after the time it started
    best = run / "model.pt"
    assert best.is_file()
    assert not (tmp_path / "bundle" / "models").exists()
    state = torch.load(best, weights_only=True)
    assert "encoder.stem.0.weight" in state or any(key.startswith("encoder.") for key in state)
    final = run / "checkpoints" / "checkpoint_final.pt"
    checkpoint = torch.load(final, weights_only=True)
    assert set(checkpoint) == {"model", "optimizer", "lr_scheduler", "best_model", "trainer"}
    assert checkpoint["trainer"]["iteration"] == 2 * checkpoint["trainer"]["epoch_length"]

    # resuming is one override: the trainer continues from the saved epoch
    resumed = _workflow(
        [CONFIGS / "train.json"], "train", max_epochs=3, num_folds=2, crops_per_image=2, resume_from=str(final), **override
    )
    resumed.run()
    assert [path.name for path in (tmp_path / "bundle" / "runs").iterdir()] == [run.name]  # continued in its folder
    trainer = resumed.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 3
    assert trainer.state.iteration == 3 * len(resumed.parser.get_parsed_content("train#dataloader"))
    resumed.finalize()


def _threshold_network_weights(path: Path, gain: float = 100.0, cut: float = 0.5) -> None:
    """A 1x1 convolution whose logits are gain * (x - cut): on [0, 1]-scaled images it predicts x > cut."""
    conv = torch.nn.Conv2d(1, 1, kernel_size=1)
    with torch.no_grad():
        conv.weight.fill_(gain)
        conv.bias.fill_(-gain * cut)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(conv.state_dict(), path)


def _one_image_dataset(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> Path:
    """A labelled folder (images/, masks/) holding one 8-bit image and its mask."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    tifffile.imwrite(root / "images" / f"{name}.tif", image)
    tifffile.imwrite(root / "masks" / f"{name}_m.tif", mask)
    return root


def _evaluate_threshold_network(tmp_path: Path, dataset: Path, eval_dir: Path, **override) -> tuple[dict, dict]:
    """evaluate.json with the network of :func:`_threshold_network_weights` on ``dataset`` (intensities
    scaled to [0, 1], no data bar); the contents of ``metrics.json`` and ``instance_metrics.json``."""
    _threshold_network_weights(tmp_path / "bundle" / "models" / "model.pt")
    workflow = _workflow(
        [CONFIGS / "train.json", CONFIGS / "evaluate.json"],
        "eval",
        bundle_root=str(tmp_path / "bundle"),
        dataset_dir=str(dataset),
        eval_dir=str(eval_dir),
        network_def={"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 1},
        intensity="unit",
        crop_bottom=0,
        **TINY_RUN,
        **override,
    )
    workflow.run()
    workflow.finalize()
    return tuple(json.loads((eval_dir / name).read_text()) for name in ("metrics.json", "instance_metrics.json"))


@pytest.mark.parametrize("tta", [None, "dihedral"])
def test_evaluation_metrics_match_a_hand_computed_case(tmp_path, tta):
    # image: bright where the network will say "particle"; mask: the truth. Both known pixel by pixel.
    # The network acts pixel by pixel, so test-time augmentation must not change a pixel.
    image = np.zeros((64, 64), np.uint8)
    image[:, :32] = 200  # predicted particle: left half (2048 px)
    mask = np.zeros((64, 64), np.uint8)
    mask[:32, :48] = 255  # true particle: 32 x 48 = 1536 px, of which 32 x 32 = 1024 in the left half
    dataset = _one_image_dataset(tmp_path / "data", "case", image, mask)
    metrics, _ = _evaluate_threshold_network(tmp_path, dataset, tmp_path / "eval", tta=tta)
    tp, fp, fn = 1024, 2048 - 1024, 1536 - 1024
    tn = 64 * 64 - tp - fp - fn
    case = metrics["per_image"][0]
    assert case["name"] == "case"
    assert (case["tp"], case["fp"], case["fn"], case["tn"]) == (tp, fp, fn, tn)
    assert case["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert case["iou"] == pytest.approx(tp / (tp + fp + fn))
    assert case["precision"] == pytest.approx(tp / (tp + fp))
    assert case["recall"] == pytest.approx(tp / (tp + fn))
    assert case["accuracy"] == pytest.approx((tp + tn) / (64 * 64))
    assert metrics["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert (tmp_path / "eval" / "metrics.csv").is_file()


def test_particle_threshold_splits_what_the_mask_bridges(tmp_path):
    """Two particles joined by a one-pixel column of probability about 0.64: one particle at the mask's
    threshold 0.5, two at the evaluation's default particle threshold (0.7); the pixel scores stay those of
    the 0.5 mask."""
    image = np.zeros((64, 64), np.uint8)
    image[20:30, 20:41] = 255
    image[20:30, 30] = 129  # sigmoid(100 * (129 / 255 - 0.5)) = 0.64
    dataset = _one_image_dataset(tmp_path / "data", "pair", image, np.where(image == 255, 255, 0).astype(np.uint8))
    pixels, particles = _evaluate_threshold_network(
        tmp_path, dataset, tmp_path / "eval_mask_threshold", particle_threshold="@threshold"
    )
    assert (particles["pooled"]["pred_count"], particles["pooled"]["tp"], particles["pooled"]["true_count"]) == (1, 0, 2)
    strict_pixels, strict_particles = _evaluate_threshold_network(tmp_path, dataset, tmp_path / "eval_default")
    assert (strict_particles["pooled"]["pred_count"], strict_particles["pooled"]["tp"]) == (2, 2)
    assert strict_pixels["pooled"] == pixels["pooled"]


def test_inference_writes_full_size_masks_for_any_size(tmp_path):
    inputs = tmp_path / "in"
    (inputs / "nested").mkdir(parents=True)
    sizes = {"small": (40, 50), "odd": (100, 130)}
    for name, size in sizes.items():
        image, _ = render_micrograph(size, rng=1, mean_diameter_px=10.0)
        tifffile.imwrite(inputs / "nested" / f"{name}.tif", image)
    weights = tmp_path / "bundle" / "models" / "model.pt"
    network = ConfigWorkflow(
        config_file=str(CONFIGS / "train.json"), workflow_type="train", logging_file=None, **TINY_NETWORK
    )
    network.initialize()
    weights.parent.mkdir(parents=True)
    torch.save(network.parser.get_parsed_content("network_def").state_dict(), weights)

    workflow = _workflow(
        [CONFIGS / "inference.json"],
        "infer",
        bundle_root=str(tmp_path / "bundle"),
        dataset_dir=str(inputs),
        output_dir=str(tmp_path / "out"),
        **TINY_NETWORK,
        **TINY_RUN,
    )
    workflow.run()
    workflow.finalize()
    for name, size in sizes.items():
        mask = tifffile.imread(tmp_path / "out" / f"{name}_mask.tif")
        assert mask.shape == size
        assert mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        labels = tifffile.imread(tmp_path / "out" / f"{name}_labels.tif")
        assert labels.shape == size
        assert ((labels > 0) <= (mask > 0)).all()  # particles lie inside the mask
        for suffix in ("_particles.csv", "_overlay.png", "_psd.png"):
            assert (tmp_path / "out" / f"{name}{suffix}").is_file()
    summary = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("stem,unit,pixel_size_nm,pixel_size_source,particle_count")
    assert {line.split(",")[0] for line in summary[1:]} == {*sizes, "pooled"}


def _train_one_epoch(tmp_path: Path, *extra_configs: Path) -> tuple[Path, dict, ConfigWorkflow]:
    """Train the tiny network for one epoch on a tiny labelled dataset with ``extra_configs`` merged onto
    train.json; return the bundle folder, the overrides used and the finished workflow."""
    dataset = write_labelled_dataset(tmp_path / "data")
    bundle = tmp_path / "bundle"
    # the run's weights written where evaluate.json and inference.json look by default
    override = {**TINY_NETWORK, **TINY_RUN, "bundle_root": str(bundle), "dataset_dir": str(dataset), "ckpt_dir": str(bundle / "models")}
    train = _workflow([CONFIGS / "train.json", *extra_configs], "train", max_epochs=1, num_folds=2, crops_per_image=2, **override)
    train.run()
    train.finalize()
    return bundle, override, train


@pytest.mark.slow
@pytest.mark.parametrize(
    ("separation_configs", "label_channels", "outputs"),
    [
        ((), 3, 2),
        (("separation_band.json",), 2, 2),
        (("separation_relative_border.json",), 2, 2),
        (("centre_offsets.json",), 4, 3),
    ],
)
def test_separation_network_trains_evaluates_and_infers(tmp_path, separation_configs, label_channels, outputs):
    """The bundle's two-channel network (by default the line-weighted mask beside a distance map normalised
    per particle; configs/separation_*.json for the others tried; research/configs/centre_offsets.json with two offset
    channels) trains on mask + separation targets, is evaluated on the mask channel, and inference writes
    one-channel masks and particle outputs."""
    separation = [RESEARCH_CONFIGS / name for name in separation_configs]
    bundle, override, train = _train_one_epoch(tmp_path, *separation)
    crops = train.parser.get_parsed_content("train#dataset")[0]
    assert {crop["label"].shape[0] for crop in crops} == {label_channels}
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert state["decoder.head.weight"].shape[0] == outputs

    evaluate = _workflow([CONFIGS / "train.json", CONFIGS / "evaluate.json", *separation], "eval", **override)
    evaluate.run()
    evaluate.finalize()
    assert 0.0 <= json.loads((bundle / "eval" / "metrics.json").read_text())["pooled"]["dice"] <= 1.0
    assert (bundle / "eval" / "instance_metrics.json").is_file()

    infer = _workflow(
        [CONFIGS / "inference.json", *separation], "infer", **override, output_dir=str(tmp_path / "out")
    )
    infer.run()
    infer.finalize()
    mask = tifffile.imread(tmp_path / "out" / "tiny_0_mask.tif")
    assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}
    assert tifffile.imread(tmp_path / "out" / "tiny_0_labels.tif").shape == (96, 96)


@pytest.mark.slow
@pytest.mark.parametrize(("extra_config", "label_channels"), [("research/configs/line_weighted_mask.json", 2), ("configs/dice_loss.json", 1)])
def test_one_channel_network_trains_with_or_without_line_weights(tmp_path, extra_config, label_channels):
    """research/configs/line_weighted_mask.json (the bundle's network of 0.4.0 to 0.5.2) keeps one output channel and
    puts the loss weights on the lines between touching particles in the label's second channel, the training
    Dice taken on the mask channel alone; configs/dice_loss.json trains on the mask alone with the paper's
    Dice loss."""
    bundle, _, train = _train_one_epoch(tmp_path, PROJECT_ROOT / extra_config)
    crops = train.parser.get_parsed_content("train#dataset")[0]
    assert {crop["label"].shape[0] for crop in crops} == {label_channels}
    assert 0.0 <= train.trainer.state.metrics["train_mean_dice"] <= 1.0
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert state["decoder.head.weight"].shape[0] == 1


def test_inference_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", np.zeros((32, 32), np.uint8))
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "inference.json"),
        logging_file=None,
        workflow_type="infer",
        bundle_root=str(tmp_path / "bundle"),
        dataset_dir=str(tmp_path / "in"),
        **TINY_RUN,
    )
    workflow.initialize()
    with pytest.raises(RuntimeError) as error:
        workflow.run()
    assert "checkpoint not found" in str(error.value.__cause__)


def test_configs_share_one_network_definition():
    """Training, evaluation and inference run one network on one normalisation; inference's window is its own (one
    768 x 1024 window over a frame, padded by repetition; training crops 256 x 256)."""
    train = json.loads((CONFIGS / "train.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    assert train["network_def"] == inference["network_def"]
    for key in ("intensity", "sw_overlap", "sw_mode"):
        assert train[key] == inference[key]
    assert train["roi_size"] == [256, 256] and inference["roi_size"] == [768, 1024]
    assert inference["inferer"]["padding_mode"] == "replicate"


SHIPPED_WORKFLOWS = [
    ["train.json"],
    ["train.json", "evaluate.json"],
    ["train.json", "multi_gpu_train.json"],
    ["inference.json"],
    ["inference.json", "multi_gpu_inference.json"],
    ["inference.json", "inference_3d.json"],
]


@pytest.mark.parametrize("configs", SHIPPED_WORKFLOWS, ids="+".join)
def test_settings_are_every_checked_key_of_the_workflow(configs):
    """A workflow's ``settings`` (checked in "initialize", recorded in settings.json or run.json) are exactly its
    keys that check_settings has a rule for, each the reference to the key of its name: a setting a config adds is
    checked and recorded, or this test names it."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in configs])
    checked = sorted(name for name in parser.get() if name in RULES)
    assert parser["settings"] == {name: f"@{name}" for name in checked}


def test_evaluation_scores_the_particles_that_inference_writes():
    """evaluate.json is merged onto train.json, not inference.json, so it repeats the particle settings."""
    evaluate = json.loads((CONFIGS / "evaluate.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    for key in ("threshold", "particle_threshold", "particle_valley_gain", "particle_separation", "tta"):
        assert evaluate[key] == inference[key]


@pytest.mark.parametrize("configs", [["inference.json"], ["train.json", "evaluate.json"]])
def test_baseline_config_brings_its_own_particle_setting(configs):
    """configs/segresnet.json sets the particle threshold and marker height chosen for SegResNet, turns the marker
    rise chosen for ResidualFormer off and leaves the other settings."""
    bundle_only, with_segresnet = ConfigParser(), ConfigParser()
    bundle_only.read_config([str(CONFIGS / name) for name in configs])
    with_segresnet.read_config([*(str(CONFIGS / name) for name in configs), str(PROJECT_CONFIGS / "segresnet.json")])
    separation = with_segresnet["particle_separation"]
    assert separation["marker_height_px"] == 1.0 != bundle_only["particle_separation"]["marker_height_px"]
    assert separation["marker_rise"] == 0.0 != bundle_only["particle_separation"]["marker_rise"]
    own = {"marker_height_px": None, "marker_rise": None}
    assert {**separation, **own} == {**bundle_only["particle_separation"], **own}
    assert with_segresnet["particle_threshold"] == 0.8 != bundle_only["particle_threshold"]
    assert with_segresnet["network_def"]["_target_"] == "monai.networks.nets.SegResNet"


def test_valley_gain_splits_a_line_drawn_above_the_particle_threshold(tmp_path):
    """Two particles (probability 1) joined by a one-pixel column of probability about 0.9: one particle at
    the bundle's particle threshold (0.7), two once the column's dip (0.1 deep) is deepened by a gain of 6."""
    image = np.zeros((64, 64), np.uint8)
    image[20:30, 20:41] = 255
    image[20:30, 30] = 133  # sigmoid(100 * (133 / 255 - 0.5)) = 0.90
    dataset = _one_image_dataset(tmp_path / "data", "pair", image, np.where(image == 255, 255, 0).astype(np.uint8))
    _, particles = _evaluate_threshold_network(tmp_path, dataset, tmp_path / "eval_plain")
    assert (particles["pooled"]["pred_count"], particles["pooled"]["tp"]) == (1, 0)
    _, deepened = _evaluate_threshold_network(tmp_path, dataset, tmp_path / "eval_valleys", particle_valley_gain=6.0)
    assert (deepened["pooled"]["pred_count"], deepened["pooled"]["tp"]) == (2, 2)
    assert deepened["valley_gain"] == 6.0


@pytest.mark.slow
def test_verify_net_in_out_passes_on_network_def():
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "train.json"),
        device="cpu",
        n=1,
    )


def test_split_seed_keeps_the_folds_when_the_weights_are_reseeded(tmp_path):
    dataset = write_labelled_dataset(tmp_path / "data", count=10, size=(48, 48))  # no image without particles

    def validation_images(**override) -> list[str]:
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        parser.update({"dataset_dir": str(dataset), "output_dir": str(tmp_path / "run"), **override})
        return [Path(item["image"]).name for item in parser.get_parsed_content("datalists")["validation"]]

    folds_of_seed_0 = validation_images(seed=0)
    assert validation_images(seed=1, split_seed=0) == folds_of_seed_0
    assert validation_images(seed=1) != folds_of_seed_0  # by default the split follows the seed


def test_one_output_weights_load_with_line_weighted_mask_config(tmp_path):
    """Weights of the bundle's one-output network (0.4.0 to 0.5.2) do not fit the two-output network_def,
    with an error naming out_channels; research/configs/line_weighted_mask.json merged onto inference.json loads them."""
    from rformer_monai.networks import CheckpointError, ResidualFormer, load_weights

    tiny = {key.split("#")[1]: value for key, value in TINY_NETWORK.items()}
    weights = tmp_path / "model.pt"
    torch.save(ResidualFormer(out_channels=1, **tiny).state_dict(), weights)

    def network_def(*override_files: Path) -> torch.nn.Module:
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "inference.json"), *map(str, override_files)])
        parser.update(TINY_NETWORK)
        return parser.get_parsed_content("network_def")

    with pytest.raises(CheckpointError, match="out_channels"):
        load_weights(network_def(), weights)
    network = load_weights(network_def(RESEARCH_CONFIGS / "line_weighted_mask.json"), weights)
    assert network(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
