"""Helpers of the robustness tests: a tiny network, the bundle's command line, subprocess runs to completion
or killed part-way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "residualformer_sem" / "configs"
HERE = Path(__file__).resolve().parent
def cli_arguments(overrides: dict) -> list[str]:
    """``--key value`` pairs as ``python -m monai.bundle run`` takes them (lists as JSON)."""
    arguments: list[str] = []
    for key, value in overrides.items():
        arguments += [f"--{key}", json.dumps(value) if isinstance(value, (list, dict)) else str(value)]
    return arguments


def bundle_command(config_files: Sequence[Path], overrides: dict) -> list[str]:
    """The command line of ``python -m monai.bundle run`` on ``config_files`` with ``overrides``."""
    files = [str(path) for path in config_files]
    config_argument = files[0] if len(files) == 1 else json.dumps(files)
    return [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        config_argument,
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        *cli_arguments(overrides),
    ]


def subprocess_env() -> dict[str, str]:
    """The environment of a bundle subprocess: the test helpers (``slow_handlers``) importable, one torch thread
    (as in the tests' own process, see ``conftest.single_threaded_torch``)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    return env


def run_bundle(
    config_files: Sequence[Path], overrides: dict, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the bundle to completion in a subprocess, capturing stdout and stderr."""
    return subprocess.run(
        bundle_command(config_files, overrides),
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_when(
    config_files: Sequence[Path], overrides: dict, cwd: Path, ready: Callable[[], bool], timeout: float = 120
) -> subprocess.Popen:
    """Start the bundle in a subprocess and SIGKILL it as soon as ``ready()`` holds (polled)."""
    process = subprocess.Popen(
        bundle_command(config_files, overrides),
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                stderr = process.stderr.read()[-2000:]
                raise AssertionError(f"the run ended (exit {process.returncode}) before it could be killed: {stderr}")
            if time.monotonic() > deadline:
                raise AssertionError("the run did not reach the point to kill it in time")
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    process.stderr.close()
    return process


def last_stderr_line(stderr: str) -> str:
    """The last line the terminal shows (progress bars end their lines with carriage returns)."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


TRAIN = CONFIGS / "train.json"


def train_config_files(folder: Path, extra_handlers: Sequence[dict] = ()) -> list[Path]:
    """train.json, plus (written to ``folder``) a config adding ``extra_handlers`` to the trainer's handlers."""
    if not extra_handlers:
        return [TRAIN]
    handlers = json.loads(TRAIN.read_text())["train"]["handlers"]
    path = Path(folder) / "train_extra_handlers.json"
    path.write_text(json.dumps({"train#handlers": [*handlers, *extra_handlers]}, indent=4))
    return [TRAIN, path]
