"""Parallel, vectorized CPU attention kernels for TVM's paged KV cache.

TVM 0.27 ships CPU attention kernels that run every head and query serially and, in ragged
prefill, score every key against every query before masking (O(L^2) with no causal skip). At
L = 1000 they dominate both prefill and decode. These kernels keep the exact signatures of
``batch_decode_paged_kv`` and ``batch_prefill_ragged_kv`` (so the cache calls them unchanged) and:

- run (query, head) pairs in parallel on the runtime's thread pool; in decode, the query heads
  of one GQA group share each K/V row they load, and each head's cache is split into ranges
  that are merged at the end (3 KV heads alone would leave threads idle);
- visit only the causally visible keys;
- in prefill, convert the keys (transposed) and values to fp32 once per call, which every query
  block of a GQA group then reads, and keep a block's V accumulators in registers a slab of
  V_LANES columns at a time (1.6x at SmolLM2's shapes and 2.3x at 8B's, L = 1000, against
  converting each chunk per block with the accumulators in memory);
- use a chunked online softmax: CHUNK scores at a time, one rescale per chunk, not per key;
- vectorize the dot products (DOT_LANES partial sums; in decode, KEYS keys side by side so the
  FMA chains overlap) and the V accumulation over head_dim.

RoPE is applied by the cache before these run (RopeMode.NORMAL), so ``rotary_mode`` is unused.
TVM's whole-cache sliding-window variants are not replaced (our models never enable them).

Two model features TVM's kernels lack are compiled in as constants:

- ``softcap``: scores become cap * tanh(score / cap) before the softmax (Gemma 2);
- ``window``: a query at position p sees keys at positions > p - window (Gemma 2's even layers,
  Phi-3), exactly per query. The cache hands a kernel one per-layer value, ``sm_scale``, and no
  layer id, so a layer whose attention slides passes its scale negated (``WINDOWED``): the
  kernels take the magnitude as the scale and the sign as "mask to the window". TVM's own
  per-layer sliding mode is not used: it fixes the window at 1024 tokens, page-granular.

Both kernels are only ever called on a fresh sequence's single prefill chunk (ragged) and for
decode steps; the runtime (``harness.engines.tvm.runtime``) prefills a prompt in one chunk, so
TVM's paged-prefill kernel, which has neither feature, never runs.
"""

from __future__ import annotations

import math

from . import cpu_attrs, vector_lanes

# keys scored per online-softmax step (QB x CHUNK scores stay under the 1 KiB stack limit)
CHUNK = 16
DOT_LANES = 8  # partial sums in a q.k dot product (decode sums exactly 8)
KEYS = 8  # keys whose q.k a decode step computes side by side (page_size is a multiple)
LOG2E = math.log2(math.e)
WINDOWED = -1.0  # sm_scale's sign for a layer that masks to the sliding window (see above)
MASKED = -5e4  # a score that fast_exp2 turns into 0 next to any real score


def softcapped(T, score, softcap: float):
    """cap * tanh(s / cap) on a score in log2 units (scores here carry the LOG2E factor)."""
    if not softcap:
        return score
    cap = T.float32(softcap * LOG2E)
    return cap * T.tanh(score / cap)


def key_visible(T, in_range, distance, sm_scale, window: int):
    """Whether a key is attended to: within the sequence so far (``in_range``) and, in a
    windowed layer, fewer than ``window`` positions behind the query (``distance``)."""
    if not window:
        return in_range
    return T.And(in_range, T.Or(sm_scale > T.float32(0), distance < window))


def tree(op, values: list):
    """op over values as a balanced tree: log2(n) dependent steps instead of n (a serial max or
    sum over a chunk of scores is latency-bound)."""
    while len(values) > 1:
        values = [
            op(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
            for i in range(0, len(values), 2)
        ]
    return values[0]


def fast_exp2(T, x):
    """2**x for x <= 0 without a libm call, so it vectorizes: 2**floor(x) from the exponent
    bits, 2**frac(x) from a degree-6 Taylor polynomial (relative error < 2e-5)."""
    x = T.max(x, T.float32(-126.0))
    whole = T.floor(x)
    f = x - whole
    poly = T.float32(1.0) + f * (
        T.float32(0.6931472)
        + f
        * (
            T.float32(0.2402265)
            + f
            * (
                T.float32(0.05550411)
                + f
                * (
                    T.float32(0.009618129)
                    + f * (T.float32(0.001333355) + f * T.float32(0.0001540353))
                )
            )
        )
    )
    return T.reinterpret("float32", T.shift_left(T.Cast("int32", whole) + 127, 23)) * poly


QUERY_BLOCK = 8  # queries of one head per prefill work item; they share each K and V row loaded
V_LANES = 16  # columns of V accumulated per pass in prefill (QB x V_LANES fp32 in registers)
# With 16 vector registers of 8 floats (x86 without AVX-512), 8 queries' scores (8 x CHUNK) or
# V columns (8 x V_LANES) fill all 16 and spill; 6 leave room for the operands. 1.13x at L=200
# and 1.23-1.31x at L=1000 for SmolLM2's, Qwen2-0.5B's and 8B's heads on EPYC Zen 3 (4: 1.22x,
# 5: 1.21x, 3: 1.09x at SmolLM2's, L=1208).
QUERY_BLOCK_YMM = 6


def prefill_query_block(target) -> int:
    """Queries per prefill work item for ``target``: 6 on x86 without AVX-512 (16 registers of
    8 floats), else 8 (AVX-512's 32 of 16; NEON's 32 of 4 unmeasured: no ARM hardware here)."""
    return QUERY_BLOCK_YMM if vector_lanes(target) == 8 else QUERY_BLOCK


def prefill_ragged(
    h_kv: int,
    h_q: int,
    d_qk: int,
    d_v: int,
    dtype: str,
    window: int = 0,
    softcap: float = 0.0,
    query_block: int = QUERY_BLOCK,
):
    from tvm.script import tirx as T

    group = h_q // h_kv
    QB = query_block

    attrs = cpu_attrs(global_symbol="batch_prefill_ragged_kv_cpu")

    @T.prim_func(s_tir=True)
    def batch_prefill_ragged_kv(
        var_q: T.handle,
        var_q_indptr: T.handle,
        var_k: T.handle,
        var_v: T.handle,
        var_kv_indptr: T.handle,
        var_q_rope_position: T.handle,
        var_k_rope_pos_offset: T.handle,
        var_output: T.handle,
        var_lse: T.handle,
        causal: T.int32,
        rotary_mode: T.int32,
        rope_scale: T.float32,
        rope_theta: T.float32,
        sm_scale: T.float32,
    ):
        T.func_attr(attrs)
        batch_size = T.int32()
        qo_len = T.int32()
        kv_len = T.int32()
        q_indptr_off = T.int32()
        kv_indptr_off = T.int32()
        q_rope_off = T.int32()
        k_rope_off = T.int32()
        q = T.match_buffer(var_q, (qo_len, h_q, d_qk), dtype)
        q_indptr = T.match_buffer(
            var_q_indptr, (batch_size + 1,), "int32", elem_offset=q_indptr_off
        )
        k = T.match_buffer(var_k, (kv_len, h_kv, d_qk), dtype)
        v = T.match_buffer(var_v, (kv_len, h_kv, d_v), dtype)
        kv_indptr = T.match_buffer(
            var_kv_indptr, (batch_size + 1,), "int32", elem_offset=kv_indptr_off
        )
        # Unused in the body, but matched so that the signature is the one the KV cache calls;
        # the assignments name the buffers (a bare T.match_buffer call leaves them "buffer" and
        # "buffer_1" in the IR, and `_ = T.match_buffer(...)` does not parse).
        q_rope_position = T.match_buffer(  # noqa: F841
            var_q_rope_position, (qo_len,), "int32", elem_offset=q_rope_off
        )
        k_rope_pos_offset = T.match_buffer(  # noqa: F841
            var_k_rope_pos_offset, (batch_size,), "int32", elem_offset=k_rope_off
        )
        output = T.match_buffer(var_output, (qo_len, h_q, d_v), dtype)
        lse = T.match_buffer(var_lse, (qo_len, h_q), "float32")

        # Keys transposed (head, dimension, key) and values, both in fp32, once per call: every
        # query block of every head in a group reads them, where each used to convert (and
        # transpose, scalar) its own copy of every chunk. A chunk of padding past the last key
        # keeps the last chunk's loads in bounds (its scores are masked).
        kt = T.alloc_buffer((h_kv, d_qk, kv_len + CHUNK), "float32")
        vf = T.alloc_buffer((kv_len + CHUNK, h_kv, d_v), "float32")
        for j in T.parallel(kv_len + CHUNK):
            with T.sblock("convert"):
                T.reads()
                T.writes()
                for hk in T.serial(h_kv):
                    for d in T.serial(d_qk):
                        kt[hk, d, j] = T.if_then_else(
                            j < kv_len, T.Cast("float32", k[T.min(j, kv_len - 1), hk, d]), 0.0
                        )
                    for d in T.vectorized(d_v):
                        vf[j, hk, d] = T.if_then_else(
                            j < kv_len, T.Cast("float32", v[T.min(j, kv_len - 1), hk, d]), 0.0
                        )
        for b in T.serial(batch_size):
            for item in T.parallel(T.ceildiv(q_indptr[b + 1] - q_indptr[b], QB) * h_q):
                with T.sblock("attn"):
                    T.reads()
                    T.writes()
                    qv = T.sblock_alloc_buffer((QB, d_qk), "float32")
                    acc = T.sblock_alloc_buffer((QB, d_v), "float32")
                    sc = T.sblock_alloc_buffer((QB, CHUNK), "float32")
                    slab = T.sblock_alloc_buffer((QB, V_LANES), "float32")  # acc's columns, live
                    m = T.sblock_alloc_buffer((QB,), "float32")
                    lsum = T.sblock_alloc_buffer((QB,), "float32")
                    tmp = T.sblock_alloc_buffer((2,), "float32")  # chunk max, rescale
                    # Heads inner: neighbouring items share the K/V rows of one query block.
                    h: T.let[T.int32] = item % h_q
                    hk: T.let[T.int32] = h // group
                    n_q: T.let[T.int32] = q_indptr[b + 1] - q_indptr[b]
                    n_kv: T.let[T.int32] = kv_indptr[b + 1] - kv_indptr[b]
                    # Causal blocks cost more the later they sit, and the pool hands each thread
                    # one contiguous range of items: visiting blocks as 0, last, 1, last - 1, ...
                    # gives every range a fair share of cheap and dear ones.
                    n_blocks: T.let[T.int32] = T.ceildiv(n_q, QB)
                    visit: T.let[T.int32] = item // h_q
                    qi0: T.let[T.int32] = (
                        T.if_then_else(visit % 2 == 0, visit // 2, n_blocks - 1 - visit // 2) * QB
                    )
                    rows: T.let[T.int32] = T.min(QB, n_q - qi0)
                    kv0: T.let[T.int32] = kv_indptr[b]
                    # keys visible to the block's last query
                    # (causal: the diagonal is aligned to the end)
                    vis_last: T.let[T.int32] = T.if_then_else(
                        causal > 0, T.min(n_kv, n_kv - n_q + qi0 + rows), n_kv
                    )
                    for r in T.serial(QB):
                        for d in T.vectorized(d_qk):
                            qv[r, d] = (
                                T.if_then_else(
                                    r < rows,
                                    T.Cast(
                                        "float32", q[q_indptr[b] + T.min(qi0 + r, n_q - 1), h, d]
                                    ),
                                    T.float32(0),
                                )
                                * T.fabs(sm_scale)
                                * LOG2E
                            )
                        for d in T.vectorized(d_v):
                            acc[r, d] = T.float32(0)
                        m[r] = T.float32(MASKED)
                        lsum[r] = T.float32(0)
                    for c in T.serial(T.ceildiv(vis_last, CHUNK)):
                        # Scores with d outer and the block's queries inner: QB x CHUNK / lanes
                        # independent FMA chains (16 on AVX-512), where one query at a time
                        # made each chain wait on its previous FMA (latency-bound).
                        for r in T.unroll(QB):
                            for j in T.vectorized(CHUNK):
                                sc[r, j] = T.float32(0)
                        for d in T.serial(d_qk):
                            for r in T.unroll(QB):
                                for j in T.vectorized(CHUNK):
                                    sc[r, j] = sc[r, j] + qv[r, d] * kt[hk, d, kv0 + c * CHUNK + j]
                        for r in T.serial(QB):
                            # keys are the chunk's own tokens:
                            # query r sits at key index n_kv - n_q + qi0 + r
                            for j in T.vectorized(CHUNK):
                                sc[r, j] = T.if_then_else(
                                    key_visible(
                                        T,
                                        c * CHUNK + j
                                        < T.if_then_else(
                                            causal > 0, T.min(n_kv, n_kv - n_q + qi0 + r + 1), n_kv
                                        ),
                                        n_kv - n_q + qi0 + r - c * CHUNK - j,
                                        sm_scale,
                                        window,
                                    ),
                                    softcapped(T, sc[r, j], softcap),
                                    T.float32(MASKED),
                                )
                            tmp[0] = T.max(m[r], tree(T.max, [sc[r, j] for j in range(CHUNK)]))
                            tmp[1] = fast_exp2(T, m[r] - tmp[0])
                            m[r] = tmp[0]
                            lsum[r] = lsum[r] * tmp[1]
                            for d in T.vectorized(d_v):
                                acc[r, d] = acc[r, d] * tmp[1]
                            for j in T.vectorized(CHUNK):
                                sc[r, j] = T.if_then_else(
                                    sc[r, j] > T.float32(MASKED),
                                    fast_exp2(T, sc[r, j] - tmp[0]),
                                    T.float32(0),
                                )
                            lsum[r] = lsum[r] + tree(
                                lambda a, b: a + b, [sc[r, j] for j in range(CHUNK)]
                            )
                        # V_LANES columns at a time, keys inner: the block's QB accumulators of
                        # those columns stay in registers while the chunk's V rows stream by.
                        for dc in T.serial(d_v // V_LANES):
                            for r in T.unroll(QB):
                                for d in T.vectorized(V_LANES):
                                    slab[r, d] = acc[r, dc * V_LANES + d]
                            for j in T.serial(T.min(CHUNK, n_kv - c * CHUNK)):
                                for r in T.unroll(QB):
                                    for d in T.vectorized(V_LANES):
                                        slab[r, d] = (
                                            slab[r, d]
                                            + sc[r, j]
                                            * vf[kv0 + c * CHUNK + j, hk, dc * V_LANES + d]
                                        )
                            for r in T.unroll(QB):
                                for d in T.vectorized(V_LANES):
                                    acc[r, dc * V_LANES + d] = slab[r, d]
                    for r in T.serial(rows):
                        for d in T.vectorized(d_v):
                            output[q_indptr[b] + qi0 + r, h, d] = T.Cast(
                                dtype, acc[r, d] / T.max(lsum[r], T.float32(1e-30))
                            )
                        lse[q_indptr[b] + qi0 + r, h] = m[r] + T.log2(
                            T.max(lsum[r], T.float32(1e-30))
                        )

    return batch_prefill_ragged_kv


def fused_rope(
    theta: float,
    scale: float,
    head_dim: int,
    num_q_heads: int,
    num_kv_heads: int,
    dtype: str,
    rope_scaling: dict,
):
    """Split fused QKV into q, k, v and rotate q and k (RoPE), in parallel over tokens (one
    token, in decode, on the calling thread).

    Same signature as TVM's ``llama_rope_with_position_map`` kernel, which evaluates pow, cos
    and sin for every element of every head serially. Here the cos/sin of a position are
    computed once into a table of half a head (d and d + half share a frequency) and shared by
    all heads, whose halves turn in vector loops. Against a full table and a per-element select
    (A/B, EPYC Zen 4, 2 threads, SmolLM2's heads): 1208 tokens 468 -> 245 us, one token 1.71 ->
    1.03 us. Frequencies come from TVM's own
    ``switch_rope_freq_func``, so the default and ``llama3`` scalings match exactly; LongRoPE
    (Phi-3.5) divides each frequency by its short factor and scales cos/sin by the attention
    factor, as transformers does up to the trained length.
    """
    from tvm.script import tirx as T

    fused_heads = num_q_heads + 2 * num_kv_heads
    half = head_dim // 2
    cos_sin = _cos_sin(theta, scale, head_dim, rope_scaling)

    attrs = cpu_attrs(op_pattern=8)

    @T.macro
    def turn(qkv, out, s, h_in, h_out, cos_t, sin_t):
        # rotate-half: the first half takes x*cos - x[d+half]*sin, the second x*cos + x[d-half]*sin
        for d in T.vectorized(half):
            out[s, h_out, d] = T.Cast(
                dtype,
                T.Cast("float32", qkv[s, h_in, d]) * cos_t[d]
                - T.Cast("float32", qkv[s, h_in, d + half]) * sin_t[d],
            )
            out[s, h_out, d + half] = T.Cast(
                dtype,
                T.Cast("float32", qkv[s, h_in, d + half]) * cos_t[d]
                + T.Cast("float32", qkv[s, h_in, d]) * sin_t[d],
            )

    @T.macro
    def rotate(qkv, position_map, q, k, v, apply_rope, s):
        with T.sblock("rope"):
            T.reads()
            T.writes()
            # dimensions d and d + half turn at the same frequency: half the cos/sin (pow and
            # sincos calls, most of this kernel's time in prefill) serve both
            cos_t = T.sblock_alloc_buffer((half,), "float32")
            sin_t = T.sblock_alloc_buffer((half,), "float32")
            pos: T.let[T.float32] = T.Cast("float32", position_map[s])
            for d in T.serial(half):
                cos_t[d] = T.if_then_else(apply_rope > 0, cos_sin(pos, d, 0), T.float32(1))
                sin_t[d] = T.if_then_else(apply_rope > 0, cos_sin(pos, d, 1), T.float32(0))
            for h in T.serial(num_q_heads):
                turn(qkv, q, s, h, h, cos_t, sin_t)
            for h in T.serial(num_kv_heads):
                turn(qkv, k, s, num_q_heads + h, h, cos_t, sin_t)
            for h in T.serial(num_kv_heads):
                for d in T.vectorized(head_dim):
                    v[s, h, d] = qkv[s, num_q_heads + num_kv_heads + h, d]

    @T.prim_func(s_tir=True)
    def fused_rope_cpu(
        var_qkv: T.handle,
        var_position_map: T.handle,
        var_q: T.handle,
        var_k: T.handle,
        var_v: T.handle,
        apply_rope: T.int64,
    ):
        T.func_attr(attrs)
        seq_len = T.int32()
        pos_off = T.int32()
        qkv = T.match_buffer(var_qkv, (seq_len, fused_heads, head_dim), dtype)
        q = T.match_buffer(var_q, (seq_len, num_q_heads, head_dim), dtype)
        k = T.match_buffer(var_k, (seq_len, num_kv_heads, head_dim), dtype)
        v = T.match_buffer(var_v, (seq_len, num_kv_heads, head_dim), dtype)
        position_map = T.match_buffer(var_position_map, (seq_len,), "int32", elem_offset=pos_off)
        if seq_len == 1:  # decode: one token costs less than waking the thread pool
            for s in T.serial(1):
                rotate(qkv, position_map, q, k, v, apply_rope, s)
        else:
            for s in T.parallel(seq_len):
                rotate(qkv, position_map, q, k, v, apply_rope, s)

    return fused_rope_cpu


def _cos_sin(theta: float, scale: float, head_dim: int, rope_scaling: dict):
    """(pos, d, 0 | 1) -> the cos | sin expression of dimension d at a position."""
    from tvm import tirx
    from tvm.relax.frontend.nn.llm.position_embedding import switch_rope_freq_func

    kind = rope_scaling.get("rope_type", "default")
    if kind == "longrope":
        short, attention = rope_scaling["short_factor"], float(rope_scaling["attention_factor"])

        def longrope(pos, d, which: int):
            i = d % (head_dim // 2)
            divisor = _lookup(short, i) * tirx.power(
                tirx.const(theta, "float32"),
                tirx.Cast("float32", 2 * i) / tirx.const(head_dim, "float32"),
            )
            angle = pos * tirx.const(scale, "float32") / divisor
            return (tirx.cos(angle) if which == 0 else tirx.sin(angle)) * tirx.const(
                attention, "float32"
            )

        return longrope
    if kind not in ("default", "llama3"):
        raise ValueError(
            f"RoPE scaling {kind!r} has no CPU kernel (supported: default, llama3, longrope)"
        )
    freq_func = switch_rope_freq_func(rope_scaling)

    def tvm_freq(pos, d, which: int):
        cos_f, sin_f, var_map = freq_func(
            pos * tirx.const(scale, "float32"), d, head_dim, theta, "float32"
        )
        expr = cos_f if which == 0 else sin_f
        for var, value in var_map.items():
            expr = tirx.Let(var, value, expr)
        return expr

    return tvm_freq


def _lookup(values: list[float], index):
    """values[index] for a compile-time list, as a balanced tree of selects: TIR has no constant
    arrays a kernel can index, and this table is read once per (position, dimension)."""
    from tvm import tirx

    def pick(lo: int, hi: int):
        if hi - lo == 1:
            return tirx.const(float(values[lo]), "float32")
        mid = (lo + hi) // 2
        return tirx.Select(index < mid, pick(lo, mid), pick(mid, hi))

    return pick(0, len(values))
