"""keep_freed_buffers: glibc's thresholds raised in the process, unless the user set them or there is no glibc."""

from __future__ import annotations

import ctypes.util
import platform
import resource

import pytest
import torch

from rformer_monai.engines import allocator, keep_freed_buffers

GLIBC = platform.libc_ver()[0] == "glibc"


def _minor_faults_of_large_allocations(count: int = 10, size_mb: int = 64) -> int:
    """Minor page faults while allocating, touching and freeing ``count`` buffers of ``size_mb`` MB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        torch.ones(size_mb * 2**20 // 4)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_buffers_are_reused_without_page_faults(monkeypatch):
    for name in allocator.MALLOC_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    before = _minor_faults_of_large_allocations()
    try:
        assert keep_freed_buffers()
        _minor_faults_of_large_allocations(count=1)  # the first one maps its pages
        after = _minor_faults_of_large_allocations()
    finally:  # glibc's default values again (no longer adjusted as it runs), for the rest of the session
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(allocator.M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(allocator.M_TRIM_THRESHOLD, 128 * 1024)
    # each 64 MB buffer is 16384 pages of 4 KiB: mapped and faulted in anew by default, reused once kept
    assert before > 5 * 16384
    assert after < before / 10


@pytest.mark.parametrize("name", allocator.MALLOC_ENVIRONMENT)
def test_the_users_environment_is_kept(monkeypatch, name):
    monkeypatch.setenv(name, "131072")
    assert keep_freed_buffers() is False


def test_no_c_library_found(monkeypatch):
    for name in allocator.MALLOC_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert keep_freed_buffers() is False
