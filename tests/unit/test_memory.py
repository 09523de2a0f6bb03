"""The worker gives freed heap back to the system before mace trains beside it (issue 16)."""

import sys

import psutil
import pytest

from core.workflows.memory import return_freed_memory

MB = 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_heap_freed_below_a_live_allocation_goes_back_to_the_system() -> None:
    process = psutil.Process()
    # 64 kB blocks come from glibc's heap (below its mmap threshold), as a preflight's tensors
    # do; one allocated after them keeps the heap's top in use, so free() alone returns nothing.
    blocks = [bytearray(64 * 1024) for _ in range(4096)]
    kept = bytearray(64 * 1024)
    del blocks
    before = process.memory_info().rss

    return_freed_memory()

    assert before - process.memory_info().rss > 128 * MB
    assert len(kept) == 64 * 1024
