"""The library's KV append kernel (kernels.kv_append) against TVM's own, which it replaces."""

from __future__ import annotations

import numpy as np
import pytest

PAGES = 32


def build(func):
    import tvm

    from harness.engines.tvm.targets import resolve

    return tvm.tirx.build(
        tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=resolve("llvm")
    )["main"]


def appended(func, pool: np.ndarray, k, v, positions) -> np.ndarray:
    import tvm

    pages = tvm.runtime.tensor(pool)
    build(func)(pages, *(tvm.runtime.tensor(a) for a in (k, v, positions)))
    return pages.numpy()


@pytest.mark.parametrize("shape", [(3, 64), (2, 64), (8, 128), (1, 256)])
@pytest.mark.parametrize("tokens", [1, 17, 200])  # 200: past PARALLEL_TOKENS, a prefill chunk
def test_pages_written_as_tvms_kernel_writes_them(shape, tokens):
    """The same pool, bit for bit: tokens scattered over pages and slots, some not stored
    (position -1), a decode step's single token, and a chunk that runs in parallel."""
    from tvm.relax.frontend.nn.llm._page_kernels import _kv_cache_transpose_append

    from harness.engines.tvm.kernels.kv_append import kv_append

    heads, head_dim = shape
    rng = np.random.default_rng(tokens * head_dim + heads)
    k = rng.standard_normal((tokens, heads, head_dim)).astype(np.float16)
    v = rng.standard_normal((tokens, heads, head_dim)).astype(np.float16)
    positions = rng.permutation(PAGES * 16)[:tokens].astype(np.int32)
    positions[1::4] = -1
    pool = rng.standard_normal((PAGES, 2, heads, 16, head_dim)).astype(np.float16)

    theirs = appended(_kv_cache_transpose_append(heads, head_dim, "float16"), pool, k, v, positions)
    ours = appended(kv_append(heads, head_dim, "float16"), pool, k, v, positions)

    assert np.array_equal(ours, theirs)
    kept = positions >= 0
    page, slot = positions[kept] // 16, positions[kept] % 16
    np.testing.assert_array_equal(ours[page, 0, :, slot], k[kept])
    np.testing.assert_array_equal(ours[page, 1, :, slot], v[kept])
    untouched = np.ones(pool.shape[0] * 16, bool)
    untouched[positions[kept]] = False
    per_slot = ours.transpose(0, 3, 1, 2, 4).reshape(PAGES * 16, -1)
    np.testing.assert_array_equal(
        per_slot[untouched], pool.transpose(0, 3, 1, 2, 4).reshape(PAGES * 16, -1)[untouched]
    )


def test_the_parallel_path_is_exercised():
    from harness.engines.tvm.kernels.kv_append import PARALLEL_TOKENS

    assert 17 < PARALLEL_TOKENS <= 200
