"""Model size and compute counters used by benchmarks and reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["count_macs", "count_parameters"]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED_CONV_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_META_DEVICE = torch.device("meta")


def count_parameters(model: nn.Module) -> int:
    """Count the trainable parameters of ``model``.

    Args:
        model: any module.

    Returns:
        Total number of elements of the parameters with ``requires_grad``.
    """
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def _conv_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """MACs of one convolution call: output elements x (input channels / groups) x kernel volume."""
    kernel_volume = math.prod(module.kernel_size)
    return output.numel() * (module.in_channels // module.groups) * kernel_volume


def _transposed_conv_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """MACs of one transposed convolution: input elements x (output channels / groups) x kernel volume."""
    kernel_volume = math.prod(module.kernel_size)
    return inputs[0].numel() * (module.out_channels // module.groups) * kernel_volume


def _linear_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    """MACs of one linear layer call: output elements x input features."""
    return output.numel() * module.in_features


def _run_counting(model: nn.Module, x: torch.Tensor, state: dict[str, torch.Tensor] | None) -> int:
    """Run ``model`` on ``x`` (with ``state`` swapped in when given) and sum the MACs the hooks see."""
    total = [0]

    def make_hook(counter):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            total[0] += counter(module, inputs, output)

        return hook

    handles = []
    for module in model.modules():
        if isinstance(module, _CONV_TYPES):
            handles.append(module.register_forward_hook(make_hook(_conv_macs)))
        elif isinstance(module, _TRANSPOSED_CONV_TYPES):
            handles.append(module.register_forward_hook(make_hook(_transposed_conv_macs)))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(make_hook(_linear_macs)))
    try:
        with torch.no_grad():
            if state is None:
                model(x)
            else:
                functional_call(model, state, (x,))
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Count the multiply-accumulate operations (MACs) of one forward pass.

    Forward hooks count convolutions (1-D/2-D/3-D: output elements x input channels / groups x
    kernel volume), transposed convolutions (input elements x output channels / groups x kernel
    volume) and linear layers (output elements x input features). Biases, pooling, activations,
    interpolation, normalisation, concatenation and additions are not counted. The pass runs in
    eval mode on the ``meta`` device, so no memory or compute is spent on real tensors; a model that
    cannot run there is run on zeros on its own device instead. The model's train/eval mode is
    restored afterwards.

    Args:
        model: an eager (not TorchScript) module.
        input_shape: full input shape including batch and channels, e.g. ``(1, 1, 256, 256)``.

    Returns:
        The number of MACs for a batch of that shape (divide by 1e9 for GMACs).

    Raises:
        ValueError: when ``input_shape`` is not a sequence of positive ints.
    """
    if (
        isinstance(input_shape, (str, bytes))
        or not isinstance(input_shape, Sequence)
        or len(input_shape) == 0
        or any(isinstance(side, bool) or not isinstance(side, int) or side <= 0 for side in input_shape)
    ):
        raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got {input_shape!r}.")
    was_training = model.training
    model.eval()
    try:
        reference = next(model.parameters(), None)
        dtype = reference.dtype if reference is not None else torch.get_default_dtype()
        meta_state = {
            name: torch.empty_like(tensor, device=_META_DEVICE)
            for name, tensor in (*model.named_parameters(), *model.named_buffers())
        }
        try:
            return _run_counting(model, torch.zeros(tuple(input_shape), dtype=dtype, device=_META_DEVICE), meta_state)
        except (RuntimeError, NotImplementedError):
            device = reference.device if reference is not None else torch.device("cpu")
            return _run_counting(model, torch.zeros(tuple(input_shape), dtype=dtype, device=device), None)
    finally:
        model.train(was_training)
