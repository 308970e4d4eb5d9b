"""Where the bundle is: the folder with ``configs/inference.json`` that the command line and ``segment()`` run.

The bundle folder is not part of the installed package. It is found, in order: the folder given
(``--bundle-root``, ``bundle_root=``), ``$RFORMER_BUNDLE``, ``bundles/residualformer_sem`` beside the package
(a source checkout or an editable install) and ``bundles/residualformer_sem`` under the working folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUNDLE_ENVIRONMENT_VARIABLE", "INFERENCE_CONFIG", "METADATA_CONFIG", "find_bundle_root"]

BUNDLE_ENVIRONMENT_VARIABLE = "RFORMER_BUNDLE"
BUNDLE_FOLDER = Path("bundles") / "residualformer_sem"
INFERENCE_CONFIG = Path("configs") / "inference.json"
METADATA_CONFIG = Path("configs") / "metadata.json"


def _candidates() -> list[Path]:
    candidates = []
    if os.environ.get(BUNDLE_ENVIRONMENT_VARIABLE):
        candidates.append(Path(os.environ[BUNDLE_ENVIRONMENT_VARIABLE]))
    candidates.append(Path(__file__).resolve().parents[1] / BUNDLE_FOLDER)
    candidates.append(Path.cwd() / BUNDLE_FOLDER)
    return candidates


def find_bundle_root(bundle_root: str | os.PathLike | None = None) -> Path:
    """The bundle folder: ``bundle_root`` where given, else the first found (see the module docstring).

    Raises:
        FileNotFoundError: no folder holding ``configs/inference.json``, with what to do.
    """
    candidates = [Path(bundle_root)] if bundle_root is not None else _candidates()
    for candidate in candidates:
        if (candidate / INFERENCE_CONFIG).is_file():
            return candidate.resolve()
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(
        f"no bundle found (looked for {INFERENCE_CONFIG} in {looked}): pass --bundle-root DIR (bundle_root= in "
        f"Python), set ${BUNDLE_ENVIRONMENT_VARIABLE}, or get the bundle with 'rformer fetch'."
    )
