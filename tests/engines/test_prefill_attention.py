"""The ragged prefill attention kernel against numpy, at each query block size a target picks:
grouped heads, a prompt that leaves a partial last block, and which block each target gets."""

from __future__ import annotations

import math

import numpy as np
import pytest


def numpy_causal(q, k, v):
    """softmax(q k^T * scale, causal) v per query head, its KV head by grouping."""
    length, h_q, d = q.shape
    group = h_q // k.shape[1]
    out = np.zeros((length, h_q, d), np.float32)
    mask = np.tril(np.ones((length, length), bool))
    for h in range(h_q):
        s = q[:, h].astype(np.float32) @ k[:, h // group].astype(np.float32).T / math.sqrt(d)
        s = np.where(mask, s, -np.inf)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[:, h] = (p / p.sum(axis=1, keepdims=True)) @ v[:, h // group].astype(np.float32)
    return out


@pytest.mark.parametrize("query_block", [6, 8])
def test_prefill_attention_matches_numpy(query_block):
    import tvm

    from harness.engines.tvm.kernels.attention import prefill_ragged
    from harness.engines.tvm.targets import resolve

    h_kv, h_q, d, length = 2, 6, 64, 37  # 37 queries: a partial last block of 6 and of 8
    rng = np.random.default_rng(query_block)
    q, k, v = (rng.standard_normal((length, h, d)).astype(np.float16) for h in (h_q, h_kv, h_kv))
    f = prefill_ragged(h_kv, h_q, d, d, "float16", query_block=query_block)
    lib = tvm.tirx.build(
        tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), resolve("llvm")
    )
    t = lambda a: tvm.runtime.tensor(a, tvm.cpu())  # noqa: E731
    out = t(np.zeros((length, h_q, d), np.float16))
    indptr = t(np.array([0, length], np.int32))
    lib["main"](
        t(q),
        indptr,
        t(k),
        t(v),
        indptr,
        t(np.arange(length, dtype=np.int32)),
        t(np.zeros(1, np.int32)),
        out,
        t(np.zeros((length, h_q), np.float32)),
        1,  # causal
        0,  # rotary mode (RoPE is the cache's)
        1.0,
        1e4,
        1 / math.sqrt(d),
    )
    np.testing.assert_allclose(out.numpy().astype(np.float32), numpy_causal(q, k, v), atol=2e-3)


def test_each_target_gets_the_query_block_its_registers_hold(cpu_targets):
    """16 ymm registers (AVX2) take 6 queries a block; AVX-512 and ARM keep 8."""
    from harness.engines.tvm.kernels.attention import (
        QUERY_BLOCK,
        QUERY_BLOCK_YMM,
        prefill_query_block,
    )

    assert prefill_query_block(cpu_targets["avx2"]) == QUERY_BLOCK_YMM == 6
    assert prefill_query_block(cpu_targets["avx512"]) == QUERY_BLOCK == 8
    assert prefill_query_block(cpu_targets["neon"]) == QUERY_BLOCK
