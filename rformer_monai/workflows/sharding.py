"""Batch inference under ``torchrun``: every rank analyses its share of the micrographs, rank 0 summarises.

``bundles/residualformer_sem/configs/multi_gpu_inference.json`` wires these into the bundle's inference: the
datalist (inputs still missing an output, the same on every rank) is cut round-robin into one share per rank, so
every micrograph is processed once; each rank lists its failures in its own file; when every rank is done, the
run's summary rows are gathered and rank 0 writes the summary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from rformer_monai.workflows.distributed import MAIN_RANK

logger = logging.getLogger(__name__)


def world_size() -> int:
    """Processes in the process group; 1 without one."""
    return dist.get_world_size() if dist.is_initialized() else 1


def shard_items(items: Sequence[Any], rank: int) -> list[Any]:
    """This rank's share of ``items``: every ``world_size``-th item from the ``rank``-th, once every rank has
    listed its items (a barrier), so that no rank's outputs change another rank's list of pending inputs."""
    items = list(items)
    if not dist.is_initialized():
        return items
    dist.barrier()
    share = items[rank :: world_size()]
    logger.info("rank %d: %d of %d micrographs", rank, len(share), len(items))
    return share


def rank_file(path: str | os.PathLike, rank: int) -> str:
    """``path`` for rank 0, ``<stem>_rank<N><suffix>`` beside it for rank N (files each rank writes alone)."""
    path = Path(path)
    return str(path if rank == MAIN_RANK else path.with_name(f"{path.stem}_rank{rank}{path.suffix}"))


def gather_to_main_rank(values: list[Any]) -> list[Any] | None:
    """Every rank's ``values`` concatenated in rank order on rank 0 (None on the others), after every rank got
    here; ``values`` as they are without a process group."""
    if not dist.is_initialized():
        return values
    gathered: list[list[Any] | None] = [None] * world_size() if dist.get_rank() == MAIN_RANK else None
    dist.gather_object(values, gathered, dst=MAIN_RANK)
    if dist.get_rank() != MAIN_RANK:
        return None
    return [value for share in gathered for value in share]
