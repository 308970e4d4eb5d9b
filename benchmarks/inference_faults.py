"""CPU time of sliding-window inference over one 1024 x 768 micrograph, split into user and system time,
with and without :func:`rformer_monai.engines.keep_freed_buffers`.

    python benchmarks/inference_faults.py [--keep_freed_buffers] [--images 2] [--threads 1]

train.json's network (untrained: the time does not depend on the weights) and sliding window (roi_size,
sw_batch_size, sw_overlap, sw_mode) on a random micrograph; one warm-up image, then the mean over ``--images``.
Run it once with and once without the flag: each run is a fresh process, as glibc's settings are per process.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from monai.bundle import ConfigParser
from monai.inferers import sliding_window_inference

from rformer_monai.cv import BUNDLE_CONFIGS
from rformer_monai.engines import keep_freed_buffers

MICROGRAPH_SHAPE = (1, 1, 768, 1024)


def main() -> None:
    """Print seconds, user and system time and minor page faults per micrograph."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep_freed_buffers", action="store_true", help="call keep_freed_buffers first, as inference.json does")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    kept = args.keep_freed_buffers and keep_freed_buffers()
    torch.set_num_threads(args.threads)
    config = ConfigParser()
    config.read_config(str(BUNDLE_CONFIGS / "train.json"))
    network = config.get_parsed_content("network_def").eval()
    window = {
        "roi_size": config.get_parsed_content("roi_size"),
        "sw_batch_size": config.get_parsed_content("sw_batch_size"),
        "overlap": config.get_parsed_content("sw_overlap"),
        "mode": config.get_parsed_content("sw_mode"),
    }
    micrograph = torch.rand(MICROGRAPH_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sliding_window_inference(micrograph, predictor=network, **window)
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(args.images):
            sliding_window_inference(micrograph, predictor=network, **window)
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"torch threads {args.threads}, keep_freed_buffers {kept}: {seconds / args.images:.2f} s per micrograph, "
        f"user {(after.ru_utime - before.ru_utime) / args.images:.2f} s, "
        f"system {(after.ru_stime - before.ru_stime) / args.images:.2f} s, "
        f"minor faults {(after.ru_minflt - before.ru_minflt) / args.images:.0f}"
    )


if __name__ == "__main__":
    main()
