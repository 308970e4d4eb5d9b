"""The bundle's metadata.json against the MONAI bundle specification and its metadata schema, offline."""

from __future__ import annotations

import copy
import json
from urllib.parse import urlparse

import pytest
from tiny_bundle_network import BUNDLE

from rformer_monai.sharing import check_metadata, metadata_problems
from rformer_monai.sharing.metadata import REQUIRED_KEYS, TENSOR_FIELDS

METADATA_FILE = BUNDLE / "configs" / "metadata.json"
METADATA = json.loads(METADATA_FILE.read_text())
# the specification's mandatory keys (docs.monai.io mb_specification) and those meta_schema_20240725.json requires
SPEC_MANDATORY = ("version", "monai_version", "pytorch_version", "numpy_version", "task", "description", "authors",
                  "copyright", "network_data_format")  # fmt: skip
SCHEMA_REQUIRED = ("schema", "required_packages_version", *SPEC_MANDATORY)
SPEC_TENSOR_FIELDS = ("type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range",
                      "is_patch_data", "channel_def")  # fmt: skip


def test_bundle_metadata_meets_the_specification():
    assert check_metadata(METADATA_FILE) == METADATA
    assert metadata_problems(METADATA) == []
    for key in SCHEMA_REQUIRED:
        assert key in METADATA, key
    network_format = METADATA["network_data_format"]
    for io_key in ("inputs", "outputs"):
        assert network_format[io_key], io_key
        for name, tensor in network_format[io_key].items():
            missing = [field for field in SPEC_TENSOR_FIELDS if field not in tensor]
            assert not missing, f"{io_key}#{name} misses {missing}"
            assert tensor["num_channels"] == len(tensor["channel_def"])


def test_checker_holds_every_key_the_specification_and_schema_require():
    assert set(SCHEMA_REQUIRED) <= set(REQUIRED_KEYS)
    assert set(SPEC_TENSOR_FIELDS) <= set(TENSOR_FIELDS)


def test_online_verification_still_has_its_schema_url():
    # `python -m monai.bundle verify_metadata` downloads the schema this key names: it must stay an https URL
    url = urlparse(METADATA["schema"])
    assert url.scheme == "https" and url.path.endswith(".json")


def test_metadata_agrees_with_the_network_and_versions():
    image = METADATA["network_data_format"]["inputs"]["image"]
    pred = METADATA["network_data_format"]["outputs"]["pred"]
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    assert image["num_channels"] == train["network_def"]["in_channels"]
    assert pred["num_channels"] == train["network_def"]["out_channels"]
    assert image["spatial_shape"] == train["roi_size"]
    assert METADATA["version"] in METADATA["changelog"]


def _without(path: tuple[str, ...]) -> dict:
    metadata = copy.deepcopy(METADATA)
    parent = metadata
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return metadata


@pytest.mark.parametrize(
    "path, problem",
    [
        (("version",), "missing key 'version'"),
        (("required_packages_version",), "missing key 'required_packages_version'"),
        (("network_data_format", "inputs", "image", "modality"), "inputs#image: missing field 'modality'"),
        (("network_data_format", "outputs", "pred", "value_range"), "outputs#pred: missing field 'value_range'"),
        (("network_data_format", "outputs"), "non-empty 'outputs'"),
    ],
)
def test_checker_names_what_is_missing(path, problem, tmp_path):
    metadata = _without(path)
    assert any(problem in line for line in metadata_problems(metadata))
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=str(broken)):
        check_metadata(broken)


def test_checker_flags_wrong_types_and_the_deprecated_packages_key():
    metadata = copy.deepcopy(METADATA)
    metadata["network_data_format"]["inputs"]["image"]["num_channels"] = "1"
    metadata["optional_packages_version"] = {"onnx": "1.23"}
    problems = metadata_problems(metadata)
    assert any("num_channels must be of type int" in line for line in problems)
    assert any("deprecated key 'optional_packages_version'" in line for line in problems)
