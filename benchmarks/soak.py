"""Soak test of batch inference: hundreds of synthetic micrographs of mixed sizes with bad files among them, through
the bundle's inference workflow, with the peak resident memory of the first and the last images.

    python benchmarks/soak.py [--count 500] [--bad_every 10] [--network tiny|bundle] [--folder DIR] [--max_growth 0.1]

Every ``bad_every``-th input is a bad file, in turn: a truncated TIFF, an empty file, a text file named ``.tif``, a
float TIFF with NaN pixels, and a symbolic link to a file that does not exist. The good ones are synthetic SEM
micrographs of 64 to 256 pixels a side (uint8 or uint16). The run is the bundle's ``inference.json`` in this
process (one data-loading process, so that the memory measured is the whole run's), with the particle analysis,
on CPU; ``--network tiny`` (the default) shrinks the network as the tests do and gives it seeded random weights,
``--network bundle`` uses the shipped network and weights.

Checked: every good input has all its outputs, every bad one a row of ``failed.csv``, and the run ends with
"N of M images failed". Printed: the time, and the peak resident memory (VmHWM, reset through
``/proc/self/clear_refs`` at the start of each window) of the first and of the last ``--window`` images. The exit
status is 1 when the last window's peak exceeds the first's by more than ``--max_growth``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow

from rformer_monai.data.synthetic import render_micrograph
from rformer_monai.reports import PARTICLE_OUTPUT_SUFFIXES
from rformer_monai.workflows import FailedInputsError, find_user_error, output_suffixes

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE = REPOSITORY / "bundles" / "residualformer_sem"
INFERENCE = BUNDLE / "configs" / "inference.json"
SIDE_RANGE = (64, 256)  # px, drawn per image and axis
MEAN_DIAMETER_PX = 10.0
WINDOW = 100  # images whose peak memory is compared, at the start and at the end
MAX_GROWTH = 0.10  # the last window's peak may exceed the first's by this fraction
TINY_NETWORK = {
    "network_def#channels": [4, 8, 16, 32],
    "network_def#decoder_channels": 8,
    "network_def#fusion_stride": 4,
}
"""Overrides that shrink the bundle's network (as ``tests/tiny_bundle_network.py``)."""
TINY_RUN = {"roi_size": [64, 64], "sw_batch_size": 2}
RUN = {"device": "cpu", "amp": False}
KIB = 1024
MIB = 1024**2


def _truncated_tiff(path: Path, rng: np.random.Generator) -> None:
    tifffile.imwrite(path, rng.integers(0, 255, (96, 96), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:300])


def _empty(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(b"")


def _text(path: Path, rng: np.random.Generator) -> None:
    path.write_text("exported by mistake\n" * 10)


def _nan_tiff(path: Path, rng: np.random.Generator) -> None:
    image = rng.uniform(0, 1, (80, 80)).astype(np.float32)
    image[10:20, 10:20] = np.nan
    tifffile.imwrite(path, image)


def _broken_link(path: Path, rng: np.random.Generator) -> None:
    path.symlink_to(path.with_name(f"moved_{path.name}"))


BAD_KINDS = {
    "truncated": _truncated_tiff,
    "empty": _empty,
    "text": _text,
    "nan": _nan_tiff,
    "broken_link": _broken_link,
}


@dataclass
class SoakInputs:
    folder: Path
    good: list[Path]
    bad: dict[Path, str]  # path -> kind


def write_inputs(folder: Path, count: int, bad_every: int = 10, seed: int = 0) -> SoakInputs:
    """``count`` inputs in ``folder``: every ``bad_every``-th a bad file (the kinds in turn), the others synthetic
    micrographs of random sizes in ``SIDE_RANGE``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    good, bad = [], {}
    kinds = list(BAD_KINDS)
    for index in range(count):
        path = folder / f"img_{index:04d}.tif"
        if bad_every and index % bad_every == bad_every - 1:
            kind = kinds[len(bad) % len(kinds)]
            BAD_KINDS[kind](path, rng)
            bad[path] = kind
            continue
        height, width = (int(side) for side in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, size=2))
        image, _ = render_micrograph((height, width), rng=int(rng.integers(2**31)), mean_diameter_px=MEAN_DIAMETER_PX)
        if index % 2:
            image = image.astype(np.uint16) * 257  # a 16-bit export
        tifffile.imwrite(path, image)
        good.append(path)
    return SoakInputs(folder, good, bad)


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident memory (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class PeakMemoryWindows:
    """Peak resident memory of the iterations ``[0, window)`` and ``[total - window, total)`` of an engine.

    VmHWM is reset at the start of each window and read at its end; where it cannot be reset, the peak is the
    largest VmRSS read after each iteration of the window (a lower bound).
    """

    def __init__(self, total: int, window: int) -> None:
        self.windows = {"first": (0, min(window, total)), "last": (max(total - window, 0), total)}
        self.peak_bytes: dict[str, int] = {}
        self._exact: dict[str, bool] = {}
        self._rss_max: dict[str, int] = {}

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._completed)

    def _started(self, engine) -> None:
        index = engine.state.iteration - 1
        for name, (start, _) in self.windows.items():
            if index == start:
                self._exact[name] = _reset_peak()
                self._rss_max[name] = _resident_kib("VmRSS:")

    def _completed(self, engine) -> None:
        index = engine.state.iteration - 1
        for name, (start, stop) in self.windows.items():
            if start <= index < stop:
                self._rss_max[name] = max(self._rss_max[name], _resident_kib("VmRSS:"))
            if index == stop - 1:
                peak = _resident_kib("VmHWM:") if self._exact[name] else self._rss_max[name]
                self.peak_bytes[name] = peak * KIB


@dataclass
class SoakResult:
    inputs: int
    good: int
    bad: int
    seconds: float
    peak_first_bytes: int
    peak_last_bytes: int
    window: int

    @property
    def growth(self) -> float:
        return self.peak_last_bytes / self.peak_first_bytes - 1.0


def _tiny_weights(bundle_root: Path) -> dict:
    parser = ConfigParser()
    parser.read_config(str(INFERENCE))
    for key, value in TINY_NETWORK.items():
        parser[key] = value
    torch.manual_seed(0)
    path = bundle_root / "models" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return {"bundle_root": str(bundle_root), **TINY_NETWORK, **TINY_RUN}


def check_outputs(inputs: SoakInputs, output_dir: Path, error: BaseException | None) -> None:
    """Every good input has all its outputs, every bad one exactly one row of ``failed.csv``, and the run ended
    with "N of M images failed".

    Raises:
        AssertionError: naming what is missing.
    """
    suffixes = output_suffixes(False, PARTICLE_OUTPUT_SUFFIXES)
    missing = [str(output_dir / f"{path.stem}{suffix}") for path in inputs.good for suffix in suffixes]
    missing = [path for path in missing if not os.path.isfile(path)]
    assert not missing, f"{len(missing)} outputs missing, e.g. {missing[:3]}"
    with (output_dir / "failed.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    listed = [row["image"] for row in rows]
    assert sorted(listed) == sorted(str(path) for path in inputs.bad), (
        f"failed.csv lists {len(listed)} inputs, expected the {len(inputs.bad)} bad ones"
    )
    assert all(row["reason"] for row in rows), "a failed.csv row without a reason"
    user_error = find_user_error(error) if error is not None else None
    assert isinstance(user_error, FailedInputsError), f"the run ended with {error!r}"
    total = len(inputs.good) + len(inputs.bad)
    assert str(user_error).startswith(f"{len(inputs.bad)} of {total} images failed"), str(user_error)


def run_soak(
    folder: Path, count: int = 500, bad_every: int = 10, network: str = "tiny", window: int = WINDOW, seed: int = 0
) -> SoakResult:
    """Write the inputs to ``folder/inputs``, run the bundle's inference into ``folder/out``, check the outputs
    (:func:`check_outputs`) and measure the memory of the first and last ``window`` images."""
    inputs = write_inputs(folder / "inputs", count, bad_every, seed)
    output_dir = folder / "out"
    overrides = _tiny_weights(folder / "bundle") if network == "tiny" else {"bundle_root": str(BUNDLE)}
    workflow = ConfigWorkflow(
        config_file=str(INFERENCE),
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        workflow_type="infer",
        logging_file=None,
        dataset_dir=str(inputs.folder),
        output_dir=str(output_dir),
        handlers=["@run_summary"],  # no progress bar over hundreds of images
        **overrides,
        **RUN,
    )
    workflow.initialize()
    memory = PeakMemoryWindows(count, window)
    memory.attach(workflow.parser.get_parsed_content("evaluator"))
    start = time.perf_counter()
    error = None
    try:
        workflow.run()
    except RuntimeError as exc:  # MONAI wraps the run's "N of M images failed"
        error = exc
    finally:
        workflow.finalize()
    seconds = time.perf_counter() - start
    check_outputs(inputs, output_dir, error)
    return SoakResult(
        inputs=count,
        good=len(inputs.good),
        bad=len(inputs.bad),
        seconds=seconds,
        peak_first_bytes=memory.peak_bytes["first"],
        peak_last_bytes=memory.peak_bytes["last"],
        window=min(window, count),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="inputs, bad ones included")
    parser.add_argument("--bad_every", type=int, default=10, help="every N-th input is a bad file")
    parser.add_argument("--network", choices=("tiny", "bundle"), default="tiny")
    parser.add_argument("--window", type=int, default=WINDOW, help="images in the first and last memory window")
    parser.add_argument("--max_growth", type=float, default=MAX_GROWTH)
    parser.add_argument("--folder", type=Path, help="where inputs and outputs go (default a temporary folder)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    folder = arguments.folder or Path(tempfile.mkdtemp(prefix="rformer-soak-"))
    try:
        result = run_soak(folder, arguments.count, arguments.bad_every, arguments.network, arguments.window)
    finally:
        if arguments.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    flat = result.growth <= arguments.max_growth
    print(
        f"soak: {result.inputs} inputs ({result.good} good, {result.bad} bad), network {arguments.network}, "
        f"torch {torch.__version__}, {arguments.threads} thread(s)\n"
        f"  every good input has its outputs, every bad one a failed.csv row\n"
        f"  time: {result.seconds:.1f} s ({result.inputs / result.seconds:.1f} inputs/s)\n"
        f"  peak resident memory, first {result.window} images: {result.peak_first_bytes / MIB:.1f} MiB\n"
        f"  peak resident memory, last {result.window} images:  {result.peak_last_bytes / MIB:.1f} MiB\n"
        f"  growth: {100 * result.growth:+.1f} % ({'flat' if flat else 'NOT flat'}: "
        f"limit {100 * arguments.max_growth:.0f} %)"
    )
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
