"""Measuring a process's peak resident memory, for the large-image benchmark and its memory-bound test."""

from __future__ import annotations

import resource
import sys

KIB = 1024


def peak_resident_bytes() -> int:
    """This process's peak resident memory in bytes: VmHWM from /proc on Linux, else ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * KIB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * KIB  # macOS reports bytes, Linux KiB
