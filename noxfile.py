"""Developer sessions: tests, the quick-start, benchmarks. Run with `nox -s <name>`."""

from __future__ import annotations

from pathlib import Path

import nox

# a plain "torch" requirement would pull the CUDA wheels; pinning the version takes the local CPU build here
TORCH = "torch==2.13.0"
BUNDLE = "bundles/residualformer_sem"
QUICKSTART_TRAIN = f"['{BUNDLE}/configs/train.json','configs/quickstart.json']"

nox.options.sessions = ["tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, as CI runs it."""
    session.install(TORCH, "-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def quickstart(session: nox.Session) -> None:
    """The README's quick-start training run on the synthetic default."""
    session.install(TORCH, "-e", ".")
    session.run(
        "python", "-m", "monai.bundle", "run", "training",
        "--config_file", QUICKSTART_TRAIN,
        "--bundle_root", BUNDLE,
        "--logging_file", f"{BUNDLE}/configs/logging.conf",
        *session.posargs,
    )


@nox.session
def benchmark(session: nox.Session) -> None:
    """Inference speed and memory of the cross-validated networks (ResidualFormer's layouts, BasicUNet, SegResNet);
    without arguments the 8192 x 8192 case is estimated (--quick): measuring the paper layout on it takes hours
    on a CPU."""
    session.install(TORCH, "-e", ".")
    session.run("python", "benchmarks/inference_speed.py", *(session.posargs or ["--quick"]))


@nox.session
def installed(session: nox.Session) -> None:
    """A non-editable install segments a micrograph through the bundle from another working directory."""
    session.install(TORCH, ".")
    scratch = Path(session.create_tmp())
    session.chdir(scratch)
    session.run(
        "python", "-c",
        "import tifffile; from rformer_monai.data.synthetic import render_micrograph; "
        "tifffile.imwrite('synthetic.tif', render_micrograph((384, 512), 1)[0])",
    )
    bundle = Path(__file__).resolve().parent / BUNDLE
    session.run(
        "python", "-m", "monai.bundle", "run",
        "--config_file", str(bundle / "configs" / "inference.json"),
        "--bundle_root", str(bundle),
        "--dataset_dir", "synthetic.tif",
        "--output_dir", "out",
    )
    session.run("python", "-c", "import pathlib; assert pathlib.Path('out/synthetic_particles.csv').is_file()")
