"""Writing new tokens' K and V into TVM's paged KV cache, vectorized (CPU).

Same signature as TVM's ``tir_kv_cache_transpose_append`` (the cache calls it unchanged):
``pages`` (pages, 2, KV heads, page size, head dim), the new tokens' ``k`` and ``v`` (tokens,
KV heads, head dim) and each token's slot in the pool (``position_map``, -1: not stored).

TVM's kernel copies element by element. In a decode step a token's rows land on lines that the
step's weights have pushed out of the caches since the step before wrote next to them, and there
it took 1.2-1.5 us a layer (0.37-0.50% of a SmolLM2 decode loop's samples under perf at L=1000,
EPYC Zen 3; 0.2 us with its lines in cache). Row by row in vector stores: 0.15% of the samples,
about 0.45 us a layer; a 1000-token prefill chunk 34 us a layer instead of 43 (in cache).
"""

from __future__ import annotations

from . import cpu_attrs

# tokens a call appends from which the copy runs in parallel over tokens (a prefill chunk);
# below, on the calling thread: waking the thread pool costs more than a few rows
PARALLEL_TOKENS = 64


def kv_append(num_kv_heads: int, head_dim: int, dtype: str, page_size: int = 16):
    from tvm.script import tirx as T

    @T.macro
    def store(pages, k_data, v_data, position_map, t):
        position: T.let[T.int32] = position_map[t]
        if position != -1:
            page: T.let[T.int32] = position // page_size
            slot: T.let[T.int32] = position % page_size
            for h in T.unroll(num_kv_heads):
                for d in T.vectorized(head_dim):
                    pages[page, 0, h, slot, d] = k_data[t, h, d]
                for d in T.vectorized(head_dim):
                    pages[page, 1, h, slot, d] = v_data[t, h, d]

    @T.prim_func(s_tir=True)
    def tir_kv_cache_transpose_append(
        var_pages: T.handle,
        var_k_data: T.handle,
        var_v_data: T.handle,
        var_position_map: T.handle,
    ):
        T.func_attr(cpu_attrs())
        ntoken = T.int64()
        num_pages = T.int64()
        pages_elem_offset = T.int64()
        position_map_elem_offset = T.int32()
        pages = T.match_buffer(
            var_pages,
            (num_pages, 2, num_kv_heads, page_size, head_dim),
            dtype,
            elem_offset=pages_elem_offset,
        )
        k_data = T.match_buffer(var_k_data, (ntoken, num_kv_heads, head_dim), dtype)
        v_data = T.match_buffer(var_v_data, (ntoken, num_kv_heads, head_dim), dtype)
        position_map = T.match_buffer(
            var_position_map, (ntoken,), "int32", elem_offset=position_map_elem_offset
        )
        if ntoken < PARALLEL_TOKENS:
            for t in T.serial(ntoken):
                store(pages, k_data, v_data, position_map, t)
        else:
            for t in T.parallel(ntoken):
                store(pages, k_data, v_data, position_map, t)

    return tir_kv_cache_transpose_append
