"""keep_freed_buffers: glibc's thresholds raised in the process, unless the user set them or there is no glibc."""

from __future__ import annotations

import ctypes.util
import platform
import resource

import pytest
import torch

from rformer_monai.engines import allocator, keep_freed_buffers

GLIBC = platform.libc_ver()[0] == "glibc"
GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # bytes, both thresholds (malloc.h: DEFAULT_MMAP_THRESHOLD_MIN)


def _minor_faults_of_large_allocations(count: int = 10, size_mb: int = 64) -> int:
    """Minor page faults while allocating, touching and freeing ``count`` buffers of ``size_mb`` MB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        torch.ones(size_mb * 2**20 // 4)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _set_thresholds(size: int) -> None:
    """Set glibc's mmap and trim thresholds to ``size`` bytes."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    for parameter in (allocator.M_MMAP_THRESHOLD, allocator.M_TRIM_THRESHOLD):
        libc.mallopt(parameter, size)


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_buffers_are_reused_without_page_faults(monkeypatch):
    for name in allocator.MALLOC_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    # glibc's default values (a bundle training earlier in this process may have raised them), which it then
    # no longer adjusts as it runs; set again afterwards for the rest of the session
    _set_thresholds(GLIBC_DEFAULT_THRESHOLD)
    try:
        before = _minor_faults_of_large_allocations()
        assert keep_freed_buffers()
        _minor_faults_of_large_allocations(count=1)  # the first one maps its pages
        after = _minor_faults_of_large_allocations()
    finally:
        _set_thresholds(GLIBC_DEFAULT_THRESHOLD)
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
