"""Checking the bundle's settings before anything is built.

Command-line overrides arrive as whatever ``fire`` makes of them: ``--max_epochs abc`` is the string
``'abc'``, ``--overwrite true`` the string ``'true'``. :func:`check_settings`, called from the configs'
``"initialize"`` list, names the setting and the value expected instead of letting a wrong type fail
deep inside a network or a trainer.

Each config gathers its settings in one ``settings`` dict, ``{"threshold": "@threshold", ...}``, that
:func:`check_settings` checks and the run records (``settings.json``, ``run.json``). A name is written there
twice because a ``@`` reference reaches Python as its value alone and a config expression has no access to the
config parser that could look values up by name; the bundle tests check that each workflow's ``settings`` are
exactly its keys that :data:`RULES` has a rule for.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from rformer_monai.transforms.contrast import CONTRAST_MODES
from rformer_monai.transforms.pipelines import INTENSITY_MODES
from rformer_monai.workflows.errors import SettingsError
from rformer_monai.workflows.schedules import LR_SCHEDULES

TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")
SW_MODES = ("gaussian", "constant")
SPATIAL_DIMS = 2


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def _is_flag(value: Any) -> bool:
    try:
        as_bool(value, "value")
    except SettingsError:
        return False
    return True


def _is_roi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == SPATIAL_DIMS and all(_is_int(v) and v > 0 for v in value)


def _is_tta_mode(value: Any) -> bool:
    from rformer_monai.inference.tta import TTA_MODES  # imported here: the inference package imports this module

    return value is None or value in TTA_MODES


# numpy and torch seeds are unsigned 32-bit integers
SEED_RULE: tuple[str, Callable[[Any], bool]] = ("an integer >= 0", lambda v: _is_int(v) and 0 <= v < 2**32)

# name -> (what is expected, check)
RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "max_epochs": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "val_interval": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "crops_per_image": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "images_per_batch": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "sw_batch_size": ("a positive integer", lambda v: _is_int(v) and v > 0),
    "num_workers": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "block_size": ("a positive integer (pixels)", lambda v: _is_int(v) and v > 0),
    "particle_block_size": ("a positive integer (pixels)", lambda v: _is_int(v) and v > 0),
    "particle_halo_px": ("an integer >= 0 (pixels)", lambda v: _is_int(v) and v >= 0),
    "max_particle_halo_px": ("an integer >= 0 (pixels)", lambda v: _is_int(v) and v >= 0),
    "seed": SEED_RULE,
    "split_seed": SEED_RULE,
    "fold": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "num_folds": ("an integer >= 2", lambda v: _is_int(v) and v >= 2),
    "learning_rate": ("a positive number", lambda v: _is_number(v) and v > 0),
    "lr_schedule": (f"one of {LR_SCHEDULES}", lambda v: v in LR_SCHEDULES),
    "sw_overlap": ("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "threshold": ("a number in (0, 1)", lambda v: _is_number(v) and 0 < v < 1),
    "particle_threshold": ("a number in (0, 1)", lambda v: _is_number(v) and 0 < v < 1),
    "particle_valley_gain": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "pixel_size_nm": (
        "None (read from the files) or a positive number",
        lambda v: v is None or (_is_number(v) and v > 0),
    ),
    "crop_bottom": ("None (detect the data bar) or an integer >= 0", lambda v: v is None or (_is_int(v) and v >= 0)),
    "roi_size": ("a list of two positive integers such as [256, 256]", _is_roi),
    "intensity": (f"one of {INTENSITY_MODES}", lambda v: v in INTENSITY_MODES),
    "contrast": (f"one of {CONTRAST_MODES}", lambda v: v in CONTRAST_MODES),
    "flatten_background": (
        "True or False (capitalised on the command line)",
        lambda v: isinstance(v, (bool, np.bool_)),
    ),
    "sw_mode": (f"one of {SW_MODES}", lambda v: v in SW_MODES),
    "amp": ("True or False (capitalised on the command line)", lambda v: isinstance(v, (bool, np.bool_))),
    "save_probability": ("true or false", _is_flag),
    "overwrite": ("true or false", _is_flag),
    "tta": ("None (no test-time augmentation), 'dihedral' or 'flips'", _is_tta_mode),
    "dataset_dir": ("a folder or file path, or None", lambda v: v is None or isinstance(v, str)),
    "output_dir": ("a folder path", lambda v: isinstance(v, str) and v != ""),
    "ckpt_path": ("a file path", lambda v: isinstance(v, str) and v != ""),
    "ckpt_dir": ("a folder path", lambda v: isinstance(v, str) and v != ""),
    "pretrained": ("None (train from scratch) or a model file path", lambda v: v is None or (isinstance(v, str) and v != "")),
    "resume_from": ("None or a checkpoint file path", lambda v: v is None or (isinstance(v, str) and v != "")),
}


def as_bool(value: bool | str | int, name: str) -> bool:
    """Read a yes/no setting: ``True``/``False``, or the words ``true``/``false`` (``yes``/``no``, ``1``/``0``)
    that the command line passes as strings.

    Raises:
        SettingsError: anything else, naming ``name``.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_int(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise SettingsError(f"setting '{name}' must be true or false, got {value!r} ({type(value).__name__})")


def check_settings(**settings: Any) -> None:
    """Check bundle settings by name, e.g. ``check_settings(max_epochs=@max_epochs, roi_size=@roi_size)``.

    Every problem is reported at once, one setting after the other on one line.

    Raises:
        SettingsError: a setting has the wrong type or value; the message names it and what it expects.
        ValueError: a name without a rule (a mistake in the config, not in the user's input).
    """
    unknown = sorted(set(settings) - set(RULES))
    if unknown:
        raise ValueError(f"check_settings has no rule for {unknown}; known settings: {sorted(RULES)}.")
    problems = []
    for name, value in settings.items():
        expected, check = RULES[name]
        if not check(value):
            problems.append(f"setting '{name}' must be {expected}, got {value!r} ({type(value).__name__})")
    if problems:
        raise SettingsError("; ".join(problems))
