"""CPU time of one training step of the bundle's network and loss, split into user and system time.

    python benchmarks/training_step.py [--steps 6] [--batch_size 4] [--roi 256] [--config configs/X.json]
    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 python benchmarks/training_step.py

The network and loss are train.json's (``network_def``, ``loss``), fed random images and a random two-class
target with the loss weights and distance map of its three channels; Adam steps as in training. Run it under
different environments (threads, glibc's malloc settings) to compare them: glibc hands freed buffers above its
mmap threshold back to the kernel, and a step that allocates and frees large activations then pays page faults
(system time, ``minor faults``) on every step.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
from monai.bundle import ConfigParser

from research.cv import BUNDLE_CONFIGS
from rformer_monai.workflows import keep_freed_buffers
from rformer_monai.workflows.memory import MALLOC_ENVIRONMENT


def main() -> None:
    """Time ``--steps`` training steps after one warm-up step and print the mean per step."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=4, help="train.json's batch size")
    parser.add_argument("--roi", type=int, default=256, help="train.json's crop size")
    parser.add_argument("--config", nargs="*", default=[], help="configs merged over train.json, as cv run's")
    parser.add_argument(
        "--keep_freed_buffers", action="store_true", help="call rformer_monai.workflows.keep_freed_buffers first, as training does"
    )
    args = parser.parse_args()
    kept = args.keep_freed_buffers and keep_freed_buffers()
    config = ConfigParser()
    config.read_config([str(BUNDLE_CONFIGS / "train.json"), *args.config])
    network, loss = config.get_parsed_content("network_def"), config.get_parsed_content("loss")
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, 1, args.roi, args.roi)
    images = torch.rand(shape, generator=generator)
    mask = (torch.rand(shape, generator=generator) > 0.5).float()
    # train.json's label: particle mask, loss weights, distance map
    target = torch.cat([mask, torch.ones_like(mask), torch.rand(shape, generator=generator)], dim=1)

    def step() -> None:
        optimizer.zero_grad()
        loss(network(images), target).backward()
        optimizer.step()

    step()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    malloc = {name: os.environ[name] for name in MALLOC_ENVIRONMENT if name in os.environ}
    print(
        f"{' + '.join(args.config) or 'train.json'}, torch threads {torch.get_num_threads()}, batch {args.batch_size} x {args.roi}^2, malloc {malloc or 'default'}, keep_freed_buffers {kept}: "
        f"{seconds / args.steps:.2f} s/step, user {(after.ru_utime - before.ru_utime) / args.steps:.2f} s, "
        f"system {(after.ru_stime - before.ru_stime) / args.steps:.2f} s, "
        f"minor faults {(after.ru_minflt - before.ru_minflt) / args.steps:.0f} per step"
    )


if __name__ == "__main__":
    main()
