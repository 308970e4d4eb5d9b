"""The soak benchmark's short version: 20 inputs with one bad file of every kind among them; every good input gets
its outputs and every bad one a row of failed.csv (no timing or memory assertions: the full soak prints those)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_short_soak_lists_every_bad_input_and_writes_every_good_one(tmp_path, one_thread, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the config installs its own
    soak = _soak_module()
    result = soak.run_soak(tmp_path, count=20, bad_every=4, window=5)  # check_outputs raises on anything missing
    assert (result.inputs, result.good, result.bad) == (20, 15, 5)
    kinds = soak.write_inputs(tmp_path / "again", count=20, bad_every=4).bad.values()
    assert sorted(kinds) == sorted(soak.BAD_KINDS)
    assert result.peak_first_bytes > 0 and result.peak_last_bytes > 0
