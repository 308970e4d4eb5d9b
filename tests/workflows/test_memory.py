"""keep_freed_buffers: glibc's thresholds raised in the process, unless the user set them or there is no glibc."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from rformer_monai.workflows import keep_freed_buffers, memory

GLIBC = platform.libc_ver()[0] == "glibc"


# a fresh process each: the heap of this one holds whatever earlier tests left in it
FAULTS_OF_LARGE_ALLOCATIONS = """
import resource, sys, torch
from rformer_monai.workflows import keep_freed_buffers
mode, buffers, floats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kept = mode == "keep" and keep_freed_buffers()
torch.ones(floats)  # the first buffer maps its pages either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(buffers):
    torch.ones(floats)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
BUFFERS, BUFFER_MB = 10, 64
PAGES_PER_BUFFER = BUFFER_MB * 2**20 // 4096


def _minor_faults(mode: str) -> tuple[str, int]:
    """Whether keep_freed_buffers applied and the minor page faults of allocating, touching and freeing
    ``BUFFERS`` buffers of ``BUFFER_MB`` MB in a fresh process; ``mode`` ``"keep"`` calls it first."""
    environment = {key: value for key, value in os.environ.items() if key not in memory.MALLOC_ENVIRONMENT}
    arguments = [mode, str(BUFFERS), str(BUFFER_MB * 2**20 // 4)]
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_OF_LARGE_ALLOCATIONS, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    kept, faults = result.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_buffers_are_reused_without_page_faults():
    kept_default, faults_default = _minor_faults("default")
    kept, faults = _minor_faults("keep")
    assert (kept_default, kept) == ("False", "True")
    # by default every buffer above glibc's mmap threshold is mapped and faulted in anew; once kept, reused
    assert faults_default > BUFFERS // 2 * PAGES_PER_BUFFER
    assert faults < faults_default / 10


@pytest.mark.parametrize("name", memory.MALLOC_ENVIRONMENT)
def test_the_users_environment_is_kept(monkeypatch, name):
    monkeypatch.setenv(name, "131072")
    assert keep_freed_buffers() is False


def test_no_c_library_found(monkeypatch):
    for name in memory.MALLOC_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert keep_freed_buffers() is False
