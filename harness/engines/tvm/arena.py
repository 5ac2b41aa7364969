"""Host memory for a model's weights: one arena on transparent huge pages.

Decode reads every weight once a token, front to back, matrix by matrix. On 4 KiB pages that
stream crosses a page (and misses the TLB) every 4 KiB; on 2 MiB pages, every 2 MiB. TVM
allocates each tensor with ``posix_memalign``, which a kernel whose transparent huge pages are
set to ``madvise`` (the common default) keeps on 4 KiB pages. So the weights go into one
anonymous mapping that asks for huge pages (``MADV_HUGEPAGE``), and TVM gets views of it.

Measured on EPYC Zen 4 (2 vCPUs, THP ``madvise``), two sessions of one bundle in one process,
decode steps alternating (``benchmarks/huge_pages.py``), at L=200 / L=1000:
- 23:10-23:20: Qwen2-0.5B 1.083x / 1.070x, SmolLM2-135M 1.010x / 1.058x; Mistral-7B 0.985x
  at L=200;
- 00:55 the same night: Qwen2-0.5B 1.005-1.014x / 0.995-0.996x, SmolLM2 1.026x / 1.007x.
So from nothing to 8%, with the machine's state; it costs nothing, and the load holds no second
copy of any tensor.

Where the kernel gives no huge pages (THP ``never``, no ``madvise``), the arena is plain 4 KiB
memory, as before.
"""

from __future__ import annotations

import mmap

import numpy as np

HUGE_PAGE = 2 << 20
ALIGN = 64  # TVM's tensor alignment (kAllocAlignment): DLPack imports must keep it


def aligned(nbytes: int) -> int:
    """``nbytes`` rounded up to the arena's alignment of each tensor."""
    return -(-nbytes // ALIGN) * ALIGN


def host_arena(nbytes: int) -> np.ndarray | None:
    """``nbytes`` of zeroed anonymous memory as a uint8 array starting on a 2 MiB boundary,
    marked for transparent huge pages; None where the OS has no anonymous maps (not POSIX)."""
    if not hasattr(mmap, "MAP_ANONYMOUS"):
        return None
    mapping = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            mapping.madvise(advice)
        except OSError:  # a kernel built without transparent huge pages: 4 KiB pages
            pass
    whole = np.frombuffer(mapping, dtype=np.uint8)  # keeps the mapping alive
    start = -whole.ctypes.data % HUGE_PAGE
    return whole[start : start + nbytes]
