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
