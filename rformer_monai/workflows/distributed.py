"""Data-parallel training under ``torchrun``: process group, per-rank device, and which handlers run on which rank.

``configs/multi_gpu_train.json`` wires these into the bundle's training workflow. Every rank trains on its share
of the images (a ``DistributedSampler``); gradients are averaged by ``DistributedDataParallel``; MONAI's metrics
gather their buffers from every rank before they aggregate, so every rank sees the same validation Dice; only
rank 0 logs, writes TensorBoard files and saves checkpoints.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from torch import nn

logger = logging.getLogger(__name__)

MAIN_RANK = 0
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
GPU_BACKEND = "nccl"
CPU_BACKEND = "gloo"


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK``, set by ``torchrun``); 0 outside ``torchrun``."""
    return int(os.environ.get("LOCAL_RANK", MAIN_RANK))


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` where there is a GPU, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> int:
    """Join the process group ``torchrun`` set up (once; later calls only return the rank).

    Args:
        backend: ``nccl`` or ``gloo``; None takes ``nccl`` where there is a GPU, else ``gloo``.

    Returns:
        This process's global rank.

    Raises:
        RuntimeError: when the process was not started by ``torchrun`` (its environment variables are missing).
    """
    if dist.is_initialized():
        return dist.get_rank()
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"multi-process training needs the environment torchrun sets up ({', '.join(missing)} missing): launch it "
            "with `torchrun --nproc_per_node=N -m monai.bundle run training --config_file "
            "\"['configs/train.json','configs/multi_gpu_train.json']\" ...`."
        )
    if backend is None:
        backend = GPU_BACKEND if torch.cuda.is_available() else CPU_BACKEND
    if backend == GPU_BACKEND:
        torch.cuda.set_device(local_device())
    dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    logger.info("rank %d of %d joined the %s process group", rank, dist.get_world_size(), backend)
    return rank


def destroy_distributed() -> None:
    """Leave the process group once every rank has come this far (nothing to do when there is none): a rank
    that tore its connections down while rank 0 was still saving could make gloo abort another rank."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main_rank_first(rank: int, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` on rank 0 first, then on the other ranks, and its result.

    For work that writes a cache every rank then reads, such as generating the synthetic dataset: rank 0
    writes it while the others wait, then they find it complete. Without a process group it simply calls.
    """
    if not dist.is_initialized():
        return function(*args, **kwargs)
    if rank == MAIN_RANK:
        result = function(*args, **kwargs)
        dist.barrier()
        return result
    dist.barrier()
    return function(*args, **kwargs)


def main_rank_result(rank: int, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` called on rank 0 alone, its (picklable) result sent to every rank: e.g. the
    name of a new run folder, which every rank must share. Without a process group it simply calls."""
    if not dist.is_initialized():
        return function(*args, **kwargs)
    result = [function(*args, **kwargs) if rank == MAIN_RANK else None]
    dist.broadcast_object_list(result, src=MAIN_RANK)
    return result[0]


def ddp_device_ids(device: torch.device) -> list[torch.device] | None:
    """``device_ids`` for ``DistributedDataParallel``: the rank's GPU, or None for a CPU module."""
    device = torch.device(device)
    return [device] if device.type == "cuda" else None


def log_on_main_rank_only(rank: int) -> None:
    """Keep INFO logs on rank 0 only: the other ranks log warnings and errors."""
    if rank != MAIN_RANK:
        logging.getLogger().setLevel(logging.WARNING)
        for name in ("ignite", "monai", "rformer_monai"):
            logging.getLogger(name).setLevel(logging.WARNING)


def handlers_for_rank(handlers: Sequence, every_rank: Sequence, rank: int) -> list:
    """The handlers one rank attaches.

    Rank 0 attaches all of ``handlers``; the other ranks only those also in ``every_rank`` (handlers taking part
    in collective work, such as validation and resuming), in their order. Handlers of ``every_rank`` that
    ``handlers`` does not list (e.g. :class:`BroadcastBuffers`) come first, on every rank.

    A handler added to a workflow later therefore runs on rank 0 alone unless it is listed in ``every_rank``:
    loggers, TensorBoard writers and checkpoint savers must not run once per process.
    """
    handlers = list(handlers)

    def listed(handler, candidates) -> bool:
        return any(handler is candidate for candidate in candidates)

    extra = [handler for handler in every_rank if not listed(handler, handlers)]
    if rank == MAIN_RANK:
        return extra + handlers
    return extra + [handler for handler in handlers if listed(handler, every_rank)]


class BroadcastBuffers:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank whenever the engine starts.

    ``DistributedDataParallel`` broadcasts buffers before each training forward pass, but each rank then
    updates its running statistics with its own batch. Attached to the validation evaluator, this makes every
    rank validate with rank 0's statistics: those of the model rank 0 saves. Every rank must attach it.

    Args:
        network: the network, or its ``DistributedDataParallel`` wrapper.
        src: the rank whose buffers are copied.
    """

    def __init__(self, network: nn.Module, src: int = MAIN_RANK) -> None:
        self.network = network
        self.src = src

    def attach(self, engine: Engine) -> None:
        """Broadcast when ``engine`` starts a run."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not dist.is_initialized():
            return
        module = self.network.module if isinstance(self.network, nn.parallel.DistributedDataParallel) else self.network
        for buffer in module.buffers():
            dist.broadcast(buffer, src=self.src)
