"""ONNX export of the bundle's network and an onnxruntime-backed module the bundle's inference runs unchanged.

``export_onnx`` traces the network with dynamic batch, height and width, so one file serves any sliding-window
size; the bundle's ``metadata.json`` and the network definition travel in the file's metadata properties, as
``ckpt_export`` embeds them in ``model.ts``. ``OnnxRuntimeNetwork`` is a ``torch.nn.Module`` whose forward runs
an onnxruntime session: ``configs/inference_onnx.json`` puts it in place of ``network``, and the same
``SlidingWindowInferer``, pre- and post-processing run around it.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from torch import nn

from rformer_monai.bundle_location import METADATA_CONFIG
from rformer_monai.networks import load_weights
from rformer_monai.workflows.checkpoints import BEST_MODEL_FILENAME

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "pred"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
DEFAULT_OPSET = 17
DEFAULT_EXAMPLE_SHAPE = (1, 1, 256, 256)
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
VERIFY_TOLERANCE = 1e-4
"""Largest absolute logit difference between PyTorch and onnxruntime that ``export_onnx(verify=True)`` accepts."""
METADATA_PROPERTY = "metadata.json"
NETWORK_PROPERTY = "network_def"


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # an optional dependency
        raise ImportError("ONNX inference needs onnxruntime: pip install onnxruntime") from exc
    return onnxruntime


def _session(model_path: Path, providers: Sequence[str], intra_op_num_threads: int | None):
    onnxruntime = _onnxruntime()
    options = onnxruntime.SessionOptions()
    if intra_op_num_threads is not None:
        options.intra_op_num_threads = intra_op_num_threads
    return onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=list(providers))


def export_onnx(
    network: nn.Module,
    path: str | os.PathLike,
    example_shape: Sequence[int] = DEFAULT_EXAMPLE_SHAPE,
    opset_version: int = DEFAULT_OPSET,
    properties: Mapping[str, str] | None = None,
    verify: bool = True,
) -> Path:
    """Export ``network`` (in eval mode) to an ONNX file with dynamic batch, height and width.

    Args:
        network: a 2D segmentation network taking ``(B, C, H, W)``.
        path: the ``.onnx`` file to write (written to a temporary name, then renamed).
        example_shape: shape of the example input the network is traced with.
        opset_version: ONNX opset.
        properties: strings stored as the model's metadata properties (e.g. the bundle's metadata).
        verify: run the file on onnxruntime on the example input and raise when it differs from PyTorch.

    Raises:
        ValueError: when ``example_shape`` is not 4D, or verification finds a difference above
            ``VERIFY_TOLERANCE``.
    """
    import onnx

    if len(example_shape) != len(DYNAMIC_AXES) + 1:
        raise ValueError(f"example_shape must be (B, C, H, W), got {tuple(example_shape)}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    network = network.eval()
    example = torch.randn(*example_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the network's input-shape checks are Python conditions: they trace as constants, which is what we want
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(
                network,
                (example,),
                str(temporary),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES},
                opset_version=opset_version,
            )
        model = onnx.load(str(temporary))
        onnx.checker.check_model(model)
        if properties:
            onnx.helper.set_model_props(model, dict(properties))
            onnx.save(model, str(temporary))
        if verify:
            session = _session(temporary, DEFAULT_PROVIDERS, None)
            (onnx_logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: example.numpy()})
            with torch.no_grad():
                torch_logits = network(example).numpy()
            difference = float(np.abs(onnx_logits - torch_logits).max())
            if difference > VERIFY_TOLERANCE:
                raise ValueError(
                    f"{path}: onnxruntime output differs from PyTorch by {difference:.2e} (> {VERIFY_TOLERANCE}): "
                    "the network uses an operation the ONNX exporter translates differently."
                )
            logger.info("verified %s on onnxruntime: max abs logit difference %.2e", path, difference)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    logger.info("exported %s", path)
    return path


def read_onnx_properties(path: str | os.PathLike) -> dict[str, str]:
    """The metadata properties stored in an ONNX file (e.g. ``metadata.json`` and ``network_def``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def export_bundle_onnx(
    bundle_root: str | os.PathLike,
    config_file: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    ckpt_path: str | os.PathLike | None = None,
    output_path: str | os.PathLike | None = None,
    example_shape: Sequence[int] = DEFAULT_EXAMPLE_SHAPE,
    opset_version: int = DEFAULT_OPSET,
    override: Mapping[str, object] | None = None,
) -> Path:
    """Export a bundle's trained network to ONNX, with the bundle's metadata embedded.

    Args:
        bundle_root: the bundle folder.
        config_file: config(s) defining ``network_def``; default ``<bundle_root>/configs/inference.json``.
        ckpt_path: the trained weights; default the configs' ``ckpt_path`` (``<bundle_root>/models/model.pt``).
        output_path: the ONNX file; default ``<bundle_root>/models/model.onnx``.
        example_shape: shape of the example input the network is traced with.
        opset_version: ONNX opset.
        override: config overrides, e.g. ``{"network_def#fusion_stride": 4}``.
    """
    bundle_root = Path(bundle_root)
    config_files = [bundle_root / "configs" / "inference.json"] if config_file is None else config_file
    if isinstance(config_files, (str, os.PathLike)):
        config_files = [config_files]
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    metadata_path = bundle_root / METADATA_CONFIG
    if metadata_path.is_file():
        parser.read_meta(str(metadata_path))
    parser["bundle_root"] = str(bundle_root)
    for key, value in (override or {}).items():
        parser[key] = value
    network = parser.get_parsed_content("network_def")
    if ckpt_path is None and "ckpt_path" in parser:
        ckpt_path = parser.get_parsed_content("ckpt_path")
    elif ckpt_path is None:
        ckpt_path = bundle_root / "models" / BEST_MODEL_FILENAME
    load_weights(network, ckpt_path)
    properties = {NETWORK_PROPERTY: json.dumps(parser.get("network_def"))}
    if metadata_path.is_file():
        properties[METADATA_PROPERTY] = metadata_path.read_text()
    output_path = bundle_root / "models" / "model.onnx" if output_path is None else output_path
    return export_onnx(network, output_path, example_shape, opset_version, properties)


class OnnxRuntimeNetwork(nn.Module):
    """A ``torch.nn.Module`` that runs an exported ONNX network on onnxruntime.

    It takes and returns tensors like the PyTorch network (the output comes back on the input's device and
    dtype), so MONAI inferers and evaluators use it unchanged. It has no trainable parameters.

    Args:
        model_path: the ``.onnx`` file (see :func:`export_onnx`).
        providers: onnxruntime execution providers in order of preference, e.g.
            ``["CUDAExecutionProvider", "CPUExecutionProvider"]``.
        intra_op_num_threads: CPU threads per operation; None lets onnxruntime choose.

    Raises:
        FileNotFoundError: when ``model_path`` does not exist.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        intra_op_num_threads: int | None = None,
    ) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(
                f"{self.model_path}: ONNX model not found. Export it first: python -m rformer_monai.sharing onnx "
                "--bundle <bundle folder>"
            )
        self.session = _session(self.model_path, providers, intra_op_num_threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the ONNX network.

        Args:
            x: input of shape ``(B, C, H, W)``.

        Returns:
            The network's output (logits), ``(B, out_channels, H, W)``, on ``x``'s device and dtype.
        """
        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        (output,) = self.session.run([self.output_name], {self.input_name: array})
        return torch.from_numpy(output).to(device=x.device, dtype=x.dtype)
