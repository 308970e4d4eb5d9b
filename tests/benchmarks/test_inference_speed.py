"""The speed benchmark builds every network it names from the same configs the cross-validation uses."""

import importlib.util
from pathlib import Path

import pytest
import torch

from rformer_monai.networks import count_macs

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "inference_speed.py"
# GMACs per 256 x 256 tile, as the README's comparison table states them (the ResidualFormer layouts with the
# bundle's two outputs, the baselines with one), and output channels
EXPECTED_GMACS = {
    "bundle": 6.64,
    "decoder64": 14.08,
    "decoder256_quarter": 14.03,
    "paper": 160.20,
    "cheap": 4.72,
    "basicunet": 4.95,
    "segresnet": 3.89,
}
ONE_OUTPUT_MODELS = {"basicunet", "segresnet"}


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("inference_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmarked_model_is_listed_with_its_cost():
    assert set(_benchmark_module().MODELS) == set(EXPECTED_GMACS)


@pytest.mark.parametrize("name", sorted(EXPECTED_GMACS))
def test_benchmarked_model_is_the_configured_network(name):
    network = _benchmark_module().build_model(name)
    assert not network.training
    assert count_macs(network, (1, 1, 256, 256)) / 1e9 == pytest.approx(EXPECTED_GMACS[name], abs=0.005)
    with torch.inference_mode():
        out_channels = 1 if name in ONE_OUTPUT_MODELS else 2
        assert network(torch.zeros(1, 1, 64, 64)).shape == (1, out_channels, 64, 64)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="model must be one of .*segresnet"):
        _benchmark_module().build_model("unet")


def test_table_row_fills_every_column_of_the_header():
    module = _benchmark_module()
    result = {"seconds": 2.0, "windows": 20, "peak_bytes": 7e8}
    row = module._row("cpu", "bundle", module.SMALL_IMAGE, result, "measured", {"bundle": 6.6e9}, {"bundle": 1.28e6})
    header = module.TABLE_HEADER.splitlines()[0]
    assert row.count("|") == header.count("|")
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[4:8] == ["1024 x 768", "2", "0.393", "100"]  # image, s / image, MP/s, ms / window


def test_window_settings_drop_settings_that_place_the_same_windows():
    module = _benchmark_module()
    settings = module.window_settings(module.SMALL_IMAGE, [256, 1024, module.WHOLE], [0.25, 0])
    assert settings == [((256, 256), 0.25), ((256, 256), 0), ((1024, 1024), 0.25), ((768, 1024), 0.25)]
    assert [module.window_count(module.SMALL_IMAGE, *setting) for setting in settings] == [20, 12, 1, 1]


def test_roi_argument_names_the_bad_value():
    module = _benchmark_module()
    assert module._roi_argument("512") == 512
    assert module._roi_argument("768x1024") == (768, 1024)
    with pytest.raises(module.argparse.ArgumentTypeError, match="'whole', got '-3'"):
        module._roi_argument("-3")


def test_window_settings_table_fills_every_column_of_the_header():
    module = _benchmark_module()
    row = {"model": "bundle", "roi_size": module.SMALL_IMAGE, "overlap": 0.25, "seconds": [2.0, 3.0], "ratios": [1.5, 1.6]}
    lines = module.window_settings_table({"shape": module.SMALL_IMAGE, "baseline": [3.0, 4.0], "rows": [row]}).splitlines()
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "whole image (1024 x 768) | 1 | 1.00 | 2.5 |" in lines[-1]
    assert "**1.55x**" in lines[-1]
