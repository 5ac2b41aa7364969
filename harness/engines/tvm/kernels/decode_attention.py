"""Decode attention over TVM's paged KV cache: one query token per sequence, every cached key.

Same signature as TVM's ``batch_decode_paged_kv`` (the cache calls it unchanged); the shared
pieces (online softmax in log2 units, masks, soft-capping) live in :mod:`.attention`.
"""

from __future__ import annotations

from . import cpu_attrs
from .attention import DOT_LANES, LOG2E, MASKED, fast_exp2, key_visible, softcapped, tree

# llvm.prefetch locality: 2 asks for L2 (x86 prefetcht1), where there are more misses in flight
# than L1 allows; 3 (L1, prefetcht0) was 1.4x slower at 1000 keys (benchmarks/decode_attention.py)
PREFETCH_LOCALITY = 2
PREFETCH = 1  # pages ahead whose K and V rows a decode item prefetches (0: none)
SPLITS = 4  # cache ranges a decode step splits each head group's keys into (merged at the end)
# page ranges the resident layout splits a sequence's cache into, each for all its KV heads: 8
# beat 6 and 12 (3 x SPLITS) at 200 and 1000 keys for SmolLM2's shapes, 2 threads
RESIDENT_SPLITS = 8
# V dimensions summed at a time in the resident layout: G accumulators of 16 stay in registers
# (8 and 32 were 1.0-1.1x slower)
VALUE_SLICE = 16
# TVM moves a CPU buffer of this size or more off the stack (see kernels/__init__)
STACK_BYTES = 1024
# V accumulators of the two-pass layout: below 640 B, 20 of the 32 vector registers (Qwen2-0.5B's
# 7 heads x 16 dimensions); at 1 KiB they spilled (1.07-1.08x slower at 1000 keys)
TWO_PASS_ACC = 640


def decode_heads_per_item(group: int, head_dim: int) -> int:
    """Query heads of one GQA group that a decode work item serves together: they share every
    K/V row it loads and converts. As many as divide the group while their fp32 accumulators
    stay below the stack limit (in registers); at least one."""
    fits = [g for g in range(1, group + 1) if group % g == 0 and g * head_dim * 4 < STACK_BYTES]
    return max(fits, default=1)


def decode_keys_per_step(heads: int) -> int:
    """Keys scored side by side: enough independent FMA chains (keys x heads >= 8) to hide the
    FMA latency, few enough that their partial sums stay below the stack limit."""
    keys = 8
    while keys > 1 and (keys // 2) * heads >= 8:
        keys //= 2
    while keys > 1 and keys * heads * DOT_LANES * 4 >= STACK_BYTES:
        keys //= 2
    return keys


def decode_value_chunk(heads: int, head_dim: int, limit: int = STACK_BYTES) -> int:
    """Dimensions of V accumulated per pass: the whole head while ``heads`` fp32 accumulators of
    that width stay below the stack limit, else the largest fitting divisor (a multiple of the
    dot-product lanes): 128 of Gemma 2's 256."""
    fits = [
        c
        for c in range(DOT_LANES, head_dim + 1, DOT_LANES)
        if head_dim % c == 0 and heads * c * 4 < limit
    ]
    return max(fits, default=DOT_LANES)


def _pair_sums(T, a, b, low: list, high: list):
    """Two 8-lane vectors folded into one: lanes ``low`` plus lanes ``high`` of a ++ b."""
    return T.Shuffle([a, b], low) + T.Shuffle([a, b], high)


def transposed_sums(T, part, row: int, rows: int):
    """The sums of ``rows`` (8 or 4) rows of ``part``, DOT_LANES partial sums each, from row
    ``row`` on, as one vector: lane k holds row + k's sum.

    A horizontal sum per dot product costs 3 shuffle-and-add steps for one result; folding the
    rows pairwise (halves, then quarters, then neighbours) costs 21 instructions for 8 results,
    and the sums come out as a vector the scores are stored from. Pairs are (k, k + rows/2), so
    the lanes come out in row order. The kernel at 1000 keys, A/B in one process on an EPYC Zen 4
    (2 threads): 1.03-1.08x from DRAM and 1.04-1.07x hot for SmolLM2's, Qwen2-0.5B's and 8B's
    shapes. By instruction count, what is left of the hot kernel is mostly the multiply-adds."""
    v = [part[row + k, T.Ramp(0, 1, DOT_LANES)] for k in range(rows)]
    halves = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])
    quarters = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
    x = [_pair_sums(T, v[k], v[k + rows // 2], *halves) for k in range(rows // 2)]
    if rows == 8:  # lanes [r0 r4 | r1 r5 | r2 r6 | r3 r7] per pair of quarters, then neighbours
        y = [_pair_sums(T, x[0], x[1], *quarters), _pair_sums(T, x[2], x[3], *quarters)]
        return _pair_sums(T, y[0], y[1], [0, 2, 8, 10, 4, 6, 12, 14], [1, 3, 9, 11, 5, 7, 13, 15])
    y = _pair_sums(T, x[0], x[1], *quarters)  # [r0 r0 r1 r1 r2 r2 r3 r3] -> 4 lanes
    return T.Shuffle([y], [0, 2, 4, 6]) + T.Shuffle([y], [1, 3, 5, 7])


def _score_sums(T, dots: int):
    """A macro that stores the sums of ``part``'s first ``dots`` rows into ``sums``: 8 rows at a
    time through :func:`transposed_sums`, then 4, then one by one."""
    full, rest = dots // 8, dots % 8

    @T.macro
    def score_sums(part, sums):
        for c in T.unroll(full):
            sums[T.Ramp(c * 8, 1, 8)] = transposed_sums(T, part, c * 8, 8)
        if rest >= 4:
            sums[T.Ramp(full * 8, 1, 4)] = transposed_sums(T, part, full * 8, 4)
        for x in T.unroll(full * 8 + rest // 4 * 4, dots):
            sums[x] = tree(lambda a, z: a + z, [part[x, lane] for lane in range(DOT_LANES)])

    return score_sums


def _score_block(T, KS: int, G: int, parts: int):
    """A macro that scores KS keys of a page (from key ``k0``) against G query heads (rows ``q0``
    on of ``q``) into ``sums``, head-major: KS x G independent FMA chains (one dot product's
    chain alone would wait on its own latency), each K vector loaded and converted once for the
    G heads, the partial sums folded by :func:`_score_sums`."""
    score_sums = _score_sums(T, KS * G)

    @T.macro
    def score_block(q, q0, pages, page, hk, k0, part, sums):
        for x in T.unroll(KS * G):
            for lane in T.vectorized(DOT_LANES):
                part[x, lane] = T.float32(0)
        for c in T.serial(parts):
            for jj in T.unroll(KS):
                for g in T.unroll(G):
                    for lane in T.vectorized(DOT_LANES):
                        part[g * KS + jj, lane] = part[g * KS + jj, lane] + q[
                            q0 + g, c * DOT_LANES + lane
                        ] * T.Cast("float32", pages[page, 0, hk, k0 + jj, c * DOT_LANES + lane])
        score_sums(part, sums)

    return score_block


def decode_paged(
    num_kv_heads: int,
    num_qo_heads: int,
    head_dim: int,
    dtype: str,
    page_size: int = 16,
    window: int = 0,
    softcap: float = 0.0,
):
    """One decode step's attention over the paged cache, in the layout the shapes allow.

    A work item serves the query heads of one GQA group together, so that each K/V row comes
    from memory once for the whole group. When the group's accumulators fit the stack (SmolLM2:
    3 heads of 64) they stay in registers across the item's pages, with an online softmax page
    by page (:func:`_decode_resident`). Otherwise (Qwen2-0.5B's groups of 7, the 128-wide heads
    of 7B/8B models, Gemma 2's 256) the item scores its whole range first, then takes the
    softmax, then sums the V rows (:func:`_decode_two_pass`).

    Measured with benchmarks/decode_attention.py (AMD EPYC Zen 4, 2 threads, 1000 keys), the
    two-pass layout against the page-by-page one it replaced (the group in sub-blocks of heads
    that fit, each head's running state in memory): from memory 1.17-1.25x for Qwen2-0.5B's and
    8B's shapes, 0.98x for Gemma 2's; in cache 1.15x, 1.21x and 1.04x. For SmolLM2's shapes the
    resident layout stays ahead of both (1.08x and 1.28x over two-pass's predecessor)."""
    group = num_qo_heads // num_kv_heads
    heads = decode_heads_per_item(group, head_dim)
    fits = heads == group and decode_value_chunk(heads, head_dim) == head_dim
    build = _decode_resident if fits else _decode_two_pass
    return build(num_kv_heads, num_qo_heads, head_dim, dtype, page_size, window, softcap)


def _decode_resident(
    num_kv_heads: int,
    num_qo_heads: int,
    head_dim: int,
    dtype: str,
    page_size: int = 16,
    window: int = 0,
    softcap: float = 0.0,
):
    """One decode step's attention over the paged cache, in two parallel passes.

    1. Work items are ranges of pages (RESIDENT_SPLITS of them per sequence). An item reads its
       pages front to back, each page whole: K and V of every KV head, one contiguous stretch
       of the pool (pages are mostly consecutive there, as the cache hands them out in order),
       and keeps an online-softmax state (max, sum, weighted V sum) per query head. The G query
       heads of a GQA group score each K row together (one load and fp16 conversion for G dot
       products); V rows are summed VALUE_SLICE dimensions at a time, whose G accumulators stay
       in registers over the page's keys.
    2. Per query head, the partial states are merged into the output and its lse.

    Against items of one KV head each (its 2 KiB of K and of V per page, strided by the other
    heads') and V accumulators of the whole head (24 registers for SmolLM2's 3 x 64: spilled,
    a store per multiply-add): SmolLM2's shapes at 1000 keys from memory 1.42x with the pages
    in order, 1.29x scattered, 1.27x in cache; at 200 keys 1.15x and 0.99x (AMD EPYC Zen 3,
    2 threads, both builds in one process; docs/performance.md)."""
    from tvm.script import tirx as T

    H_qo, H_kv, D = num_qo_heads, num_kv_heads, head_dim
    group = H_qo // H_kv
    parts = D // DOT_LANES
    G = decode_heads_per_item(group, D)
    KS = decode_keys_per_step(G)
    S = RESIDENT_SPLITS
    VC = VALUE_SLICE if D % VALUE_SLICE == 0 else DOT_LANES

    attrs = cpu_attrs(global_symbol="batch_decode_paged_kv_cpu")
    merge = _merge_splits(T, H_qo, D, S, dtype)
    prefetch = _prefetch_whole_page(T, page_size, D, H_kv)
    score_block = _score_block(T, KS, G, parts)

    @T.prim_func(s_tir=True)
    def batch_decode_paged_kv(
        Q_handle: T.handle,
        pages_handle: T.handle,
        page_table_indptr_handle: T.handle,
        page_table_values_handle: T.handle,
        var_length_info: T.handle,
        k_rope_pos_offset_handle: T.handle,
        q_rope_position_handle: T.handle,
        output_handle: T.handle,
        lse_handle: T.handle,
        rotary_mode: T.int32,
        rope_scale: T.float32,
        rope_theta: T.float32,
        sm_scale: T.float32,
    ):
        T.func_attr(attrs)
        B = T.int32()
        nnz_pages = T.int32()
        max_num_pages = T.int32()
        indptr_off = T.int32()
        values_off = T.int32()
        k_rope_off = T.int32()
        q_rope_off = T.int32()
        len_off = T.int32()
        Q = T.match_buffer(Q_handle, (B, H_qo, D), dtype)
        pages = T.match_buffer(pages_handle, (max_num_pages, 2, H_kv, page_size, D), dtype)
        page_indptr = T.match_buffer(
            page_table_indptr_handle, (B + 1,), "int32", elem_offset=indptr_off
        )
        page_values = T.match_buffer(
            page_table_values_handle, (nnz_pages,), "int32", elem_offset=values_off
        )
        k_rope_pos_offset = T.match_buffer(
            k_rope_pos_offset_handle, (B,), "int32", elem_offset=k_rope_off
        )
        q_rope_position = T.match_buffer(
            q_rope_position_handle, (B,), "int32", elem_offset=q_rope_off
        )
        output = T.match_buffer(output_handle, (B, H_qo, D), dtype)
        lse = T.match_buffer(lse_handle, (B, H_qo), "float32")
        last_page_len = T.match_buffer(var_length_info, (B,), "int32", elem_offset=len_off)
        # each (batch, query head, split)'s partial state: running max, sum, weighted V sum
        part_m = T.alloc_buffer((B, H_qo, S), "float32")
        part_l = T.alloc_buffer((B, H_qo, S), "float32")
        part_acc = T.alloc_buffer((B, H_qo, S, D), "float32")

        # each item's scaled queries, every head's (past the stack limit: off the stack)
        q_all = T.alloc_buffer((B * S * H_qo, D), "float32")
        for item in T.parallel(B * S):
            with T.sblock("attn"):
                T.reads()
                T.writes()
                part = T.sblock_alloc_buffer((KS * G, DOT_LANES), "float32")  # head-major
                sums = T.sblock_alloc_buffer((KS * G,), "float32")
                score = T.sblock_alloc_buffer((G, page_size), "float32")
                vacc = T.sblock_alloc_buffer((G, VC), "float32")
                rescale = T.sblock_alloc_buffer((G,), "float32")
                m = T.sblock_alloc_buffer((H_qo,), "float32")
                lsum = T.sblock_alloc_buffer((H_qo,), "float32")
                tmp = T.sblock_alloc_buffer((2,), "float32")  # page max, rescale
                b: T.let[T.int32] = item // S
                split: T.let[T.int32] = item % S
                first: T.let[T.int32] = page_indptr[b]
                npages: T.let[T.int32] = page_indptr[b + 1] - first
                per: T.let[T.int32] = T.ceildiv(npages, S)
                p0: T.let[T.int32] = T.min(npages, split * per)
                p1: T.let[T.int32] = T.min(npages, p0 + per)
                for h in T.serial(H_qo):
                    for d in T.vectorized(D):
                        q_all[item * H_qo + h, d] = (
                            T.Cast("float32", Q[b, h, d]) * T.fabs(sm_scale) * LOG2E
                        )
                        part_acc[b, h, split, d] = T.float32(0)
                    m[h] = T.float32(MASKED)
                    lsum[h] = T.float32(0)
                # One page per online-softmax step, its KV heads in the order they lie in memory
                for pi in T.serial(p1 - p0):
                    p: T.let[T.int32] = p0 + pi
                    page: T.let[T.int32] = page_values[first + p]
                    used: T.let[T.int32] = T.if_then_else(
                        p == npages - 1, last_page_len[b], page_size
                    )
                    for hk in T.serial(H_kv):
                        for kb in T.serial(page_size // KS):
                            prefetch(
                                pages,
                                page_values,
                                first,
                                p,
                                p0,
                                hk * (page_size // KS) + kb,
                                H_kv * (page_size // KS),
                                npages,
                            )
                            score_block(
                                q_all, item * H_qo + hk * G, pages, page, hk, kb * KS, part, sums
                            )
                            for g in T.unroll(G):
                                for jj in T.vectorized(KS):
                                    score[g, kb * KS + jj] = sums[g * KS + jj]
                        for g in T.unroll(G):
                            for j in T.vectorized(page_size):
                                score[g, j] = T.if_then_else(
                                    key_visible(
                                        T,
                                        j < used,
                                        q_rope_position[b]
                                        - k_rope_pos_offset[b]
                                        - p * page_size
                                        - j,
                                        sm_scale,
                                        window,
                                    ),
                                    softcapped(T, score[g, j], softcap),
                                    T.float32(MASKED),
                                )
                            tmp[0] = T.max(
                                m[hk * G + g], tree(T.max, [score[g, j] for j in range(page_size)])
                            )
                            tmp[1] = fast_exp2(T, m[hk * G + g] - tmp[0])
                            m[hk * G + g] = tmp[0]
                            rescale[g] = tmp[1]
                            lsum[hk * G + g] = lsum[hk * G + g] * tmp[1]
                            for j in T.vectorized(page_size):
                                score[g, j] = T.if_then_else(
                                    score[g, j] > T.float32(MASKED),
                                    fast_exp2(T, score[g, j] - tmp[0]),
                                    T.float32(0),
                                )
                            lsum[hk * G + g] = lsum[hk * G + g] + tree(
                                lambda a, z: a + z, [score[g, j] for j in range(page_size)]
                            )
                        for c in T.serial(D // VC):
                            for g in T.unroll(G):
                                for d in T.vectorized(VC):
                                    vacc[g, d] = T.float32(0)
                            # Keys outer: each V slice is loaded and converted once for the G
                            # heads.
                            for j in T.serial(used):
                                for g in T.unroll(G):
                                    for d in T.vectorized(VC):
                                        vacc[g, d] = vacc[g, d] + score[g, j] * T.Cast(
                                            "float32", pages[page, 1, hk, j, c * VC + d]
                                        )
                            for g in T.unroll(G):
                                for d in T.vectorized(VC):
                                    part_acc[b, hk * G + g, split, c * VC + d] = (
                                        part_acc[b, hk * G + g, split, c * VC + d] * rescale[g]
                                        + vacc[g, d]
                                    )
                for h in T.serial(H_qo):
                    part_m[b, h, split] = m[h]
                    part_l[b, h, split] = lsum[h]

        merge(part_m, part_l, part_acc, output, lse, B)

    return batch_decode_paged_kv


def decode_two_pass_heads(group: int) -> int:
    """Query heads of a GQA group that a two-pass item scores together, sharing each K row's load
    and conversion: all of them while their KS x G partial sums stay in registers (below
    TWO_PASS_ACC), else the largest divisor of the group that does."""
    fits = [
        g
        for g in range(1, group + 1)
        if group % g == 0 and decode_keys_per_step(g) * g * DOT_LANES * 4 < TWO_PASS_ACC
    ]
    return max(fits, default=1)


def _decode_two_pass(
    num_kv_heads: int,
    num_qo_heads: int,
    head_dim: int,
    dtype: str,
    page_size: int = 16,
    window: int = 0,
    softcap: float = 0.0,
):
    """Decode attention for groups whose accumulators do not fit the stack, in three passes over
    an item's range of pages instead of an online softmax page by page.

    Work items are (KV head, range of pages), as in the other layouts. An item
    1. scores every key of its range for the whole group (G heads at a time, each K row loaded
       and converted once per G heads) into a score buffer, masked keys set to MASKED;
    2. takes each head's max over the range and turns its scores into exp2(score - max) in
       place, summing them: long vector loops, one rescale per item instead of one per page;
    3. sums the V rows weighted by those probabilities, DC dimensions of G heads at a time in
       registers, each V row loaded once per G heads and DC slice (from L2: the K pass
       prefetched it).
    It leaves the same partial state (max, sum, weighted V sum) per head and split as the
    others, merged by :func:`_merge_splits`."""
    from tvm.script import tirx as T

    H_qo, H_kv, D = num_qo_heads, num_kv_heads, head_dim
    group = H_qo // H_kv
    parts = D // DOT_LANES
    G = decode_two_pass_heads(group)
    NSB = group // G
    KS = decode_keys_per_step(G)
    DC = decode_value_chunk(G, D, TWO_PASS_ACC)
    S = SPLITS

    attrs = cpu_attrs(global_symbol="batch_decode_paged_kv_cpu")
    merge = _merge_splits(T, H_qo, D, S, dtype)
    prefetch = _prefetch_page(T, page_size, D)
    score_block = _score_block(T, KS, G, parts)

    @T.prim_func(s_tir=True)
    def batch_decode_paged_kv(
        Q_handle: T.handle,
        pages_handle: T.handle,
        page_table_indptr_handle: T.handle,
        page_table_values_handle: T.handle,
        var_length_info: T.handle,
        k_rope_pos_offset_handle: T.handle,
        q_rope_position_handle: T.handle,
        output_handle: T.handle,
        lse_handle: T.handle,
        rotary_mode: T.int32,
        rope_scale: T.float32,
        rope_theta: T.float32,
        sm_scale: T.float32,
    ):
        T.func_attr(attrs)
        B = T.int32()
        nnz_pages = T.int32()
        max_num_pages = T.int32()
        indptr_off = T.int32()
        values_off = T.int32()
        k_rope_off = T.int32()
        q_rope_off = T.int32()
        len_off = T.int32()
        Q = T.match_buffer(Q_handle, (B, H_qo, D), dtype)
        pages = T.match_buffer(pages_handle, (max_num_pages, 2, H_kv, page_size, D), dtype)
        page_indptr = T.match_buffer(
            page_table_indptr_handle, (B + 1,), "int32", elem_offset=indptr_off
        )
        page_values = T.match_buffer(
            page_table_values_handle, (nnz_pages,), "int32", elem_offset=values_off
        )
        k_rope_pos_offset = T.match_buffer(
            k_rope_pos_offset_handle, (B,), "int32", elem_offset=k_rope_off
        )
        q_rope_position = T.match_buffer(
            q_rope_position_handle, (B,), "int32", elem_offset=q_rope_off
        )
        output = T.match_buffer(output_handle, (B, H_qo, D), dtype)
        lse = T.match_buffer(lse_handle, (B, H_qo), "float32")
        last_page_len = T.match_buffer(var_length_info, (B,), "int32", elem_offset=len_off)
        part_m = T.alloc_buffer((B, H_qo, S), "float32")
        part_l = T.alloc_buffer((B, H_qo, S), "float32")
        part_acc = T.alloc_buffer((B, H_qo, S, D), "float32")
        # every key's score of an item, then its probability: at most ceil(pages / S) pages
        probs = T.alloc_buffer(
            (B * H_kv * S, group, T.ceildiv(nnz_pages, S) * page_size), "float32"
        )

        for item in T.parallel(B * H_kv * S):
            with T.sblock("attn"):
                T.reads()
                T.writes()
                q = T.sblock_alloc_buffer((group, D), "float32")
                acc = T.sblock_alloc_buffer((G, DC), "float32")
                part = T.sblock_alloc_buffer((KS * G, DOT_LANES), "float32")  # head-major
                sums = T.sblock_alloc_buffer((KS * G,), "float32")
                best = T.sblock_alloc_buffer((DOT_LANES,), "float32")
                total = T.sblock_alloc_buffer((DOT_LANES,), "float32")
                b: T.let[T.int32] = item // (H_kv * S)
                hk: T.let[T.int32] = item // S % H_kv
                split: T.let[T.int32] = item % S
                first: T.let[T.int32] = page_indptr[b]
                npages: T.let[T.int32] = page_indptr[b + 1] - first
                per: T.let[T.int32] = T.ceildiv(npages, S)
                p0: T.let[T.int32] = T.min(npages, split * per)
                p1: T.let[T.int32] = T.min(npages, p0 + per)
                keys: T.let[T.int32] = (p1 - p0) * page_size
                for g in T.serial(group):
                    for d in T.vectorized(D):
                        q[g, d] = (
                            T.Cast("float32", Q[b, hk * group + g, d]) * T.fabs(sm_scale) * LOG2E
                        )
                # 1. scores, G heads at a time sharing each K row
                for pi in T.serial(p1 - p0):
                    p: T.let[T.int32] = p0 + pi
                    page: T.let[T.int32] = page_values[first + p]
                    used: T.let[T.int32] = T.if_then_else(
                        p == npages - 1, last_page_len[b], page_size
                    )
                    for sb in T.serial(NSB):
                        for kb in T.serial(page_size // KS):
                            prefetch(
                                pages,
                                page_values,
                                first,
                                p,
                                p0,
                                hk,
                                sb * (page_size // KS) + kb,
                                NSB * (page_size // KS),
                                npages,
                            )
                            score_block(q, sb * G, pages, page, hk, kb * KS, part, sums)
                            for g in T.unroll(G):
                                for jj in T.serial(KS):
                                    probs[item, sb * G + g, pi * page_size + kb * KS + jj] = (
                                        T.if_then_else(
                                            key_visible(
                                                T,
                                                kb * KS + jj < used,
                                                q_rope_position[b]
                                                - k_rope_pos_offset[b]
                                                - p * page_size
                                                - kb * KS
                                                - jj,
                                                sm_scale,
                                                window,
                                            ),
                                            softcapped(T, sums[g * KS + jj], softcap),
                                            T.float32(MASKED),
                                        )
                                    )
                # 2. per head: the range's max, probabilities in place, their sum
                for g in T.serial(group):
                    for lane in T.vectorized(DOT_LANES):
                        best[lane] = T.float32(MASKED)
                        total[lane] = T.float32(0)
                    for x in T.serial(keys // DOT_LANES):
                        for lane in T.vectorized(DOT_LANES):
                            best[lane] = T.max(best[lane], probs[item, g, x * DOT_LANES + lane])
                    m: T.let[T.float32] = tree(T.max, [best[lane] for lane in range(DOT_LANES)])
                    for x in T.serial(keys // DOT_LANES):
                        for lane in T.vectorized(DOT_LANES):
                            probs[item, g, x * DOT_LANES + lane] = T.if_then_else(
                                probs[item, g, x * DOT_LANES + lane] > T.float32(MASKED),
                                fast_exp2(T, probs[item, g, x * DOT_LANES + lane] - m),
                                T.float32(0),
                            )
                            total[lane] = total[lane] + probs[item, g, x * DOT_LANES + lane]
                    part_m[b, hk * group + g, split] = m
                    part_l[b, hk * group + g, split] = tree(
                        lambda a, z: a + z, [total[lane] for lane in range(DOT_LANES)]
                    )
                # 3. the V rows weighted by the probabilities, DC dimensions of G heads at a time
                for sb in T.serial(NSB):
                    for dc in T.serial(D // DC):
                        for g in T.unroll(G):
                            for d in T.vectorized(DC):
                                acc[g, d] = T.float32(0)
                        for pi in T.serial(p1 - p0):
                            p: T.let[T.int32] = p0 + pi
                            page: T.let[T.int32] = page_values[first + p]
                            used: T.let[T.int32] = T.if_then_else(
                                p == npages - 1, last_page_len[b], page_size
                            )
                            for j in T.serial(used):
                                for g in T.unroll(G):
                                    for d in T.vectorized(DC):
                                        acc[g, d] = acc[g, d] + probs[
                                            item, sb * G + g, pi * page_size + j
                                        ] * T.Cast("float32", pages[page, 1, hk, j, dc * DC + d])
                        for g in T.unroll(G):
                            for d in T.vectorized(DC):
                                part_acc[b, hk * group + sb * G + g, split, dc * DC + d] = acc[g, d]

        merge(part_m, part_l, part_acc, output, lse, B)

    return batch_decode_paged_kv


def _merge_splits(T, H_qo: int, D: int, S: int, dtype: str):
    """The second pass: per query head, the S partial states are merged into the output and its
    lse (an empty split, with fewer pages than splits, holds sum 0 and weighs nothing)."""

    @T.macro
    def merge_head(part_m, part_l, part_acc, output, lse, bh):
        with T.sblock("merge"):
            T.reads()
            T.writes()
            out = T.sblock_alloc_buffer((D,), "float32")
            w = T.sblock_alloc_buffer((S,), "float32")
            tot = T.sblock_alloc_buffer((2,), "float32")  # max over splits, rescaled sum
            b: T.let[T.int32] = bh // H_qo
            h: T.let[T.int32] = bh % H_qo
            tot[0] = tree(T.max, [part_m[b, h, s] for s in range(S)])
            tot[1] = T.float32(0)
            for d in T.vectorized(D):
                out[d] = T.float32(0)
            for s in T.unroll(S):
                w[s] = fast_exp2(T, part_m[b, h, s] - tot[0])
                tot[1] = tot[1] + part_l[b, h, s] * w[s]
                for d in T.vectorized(D):
                    out[d] = out[d] + part_acc[b, h, s, d] * w[s]
            for d in T.vectorized(D):
                output[b, h, d] = T.Cast(dtype, out[d] / T.max(tot[1], T.float32(1e-30)))
            lse[b, h] = tot[0] + T.log2(T.max(tot[1], T.float32(1e-30)))

    @T.macro
    def merge(part_m, part_l, part_acc, output, lse, B):
        # On the calling thread: a head's merge is S x D multiply-adds, and waking the thread
        # pool cost more (the whole kernel 1.03-1.13x faster at 200-1000 keys for SmolLM2's and
        # Qwen2-0.5B's shapes, 0.98-1.00x for 8B's; the runner decodes one sequence)
        for bh in T.serial(B * H_qo):
            merge_head(part_m, part_l, part_acc, output, lse, bh)

    return merge


def _prefetch_page(T, page_size: int, D: int):
    """Ask for the K and V rows of the item's page PREFETCH pages ahead into L2, a cache line at a
    time: pages sit anywhere in the pool, so the hardware prefetcher restarts at every page.

    The requests for the next page are spread over the current page's key blocks (and sub-blocks
    of heads), a few lines each: all of them at once stall the core while the load queue is full.
    Measured with benchmarks/decode_attention.py, AMD EPYC Zen 4, 2 threads, 1000 keys:
    - into L2 against none: SmolLM2's shapes 1.57-1.68x, Llama-3-8B's 1.37x (into L1: 1.19x and
      1.00x); 2-4 pages ahead no faster than 1;
    - the item's first page asked for when it starts: 1.02-1.10x more (from DRAM, most at 200
      keys, where an item has 3-4 pages);
    - spreading the requests: 1.13-1.24x more for 8B's shapes, 1.04-1.11x for SmolLM2's at 1000
      keys, within noise at 200 keys and for Qwen2-0.5B's;
    - asking past the item's last page (for the thread's next item): 1.03-1.08x for SmolLM2's and
      8B's shapes, 1.01-1.02x for Qwen2-0.5B's, at 200 and 1000 keys (two A/B runs, both orders)."""
    lines = page_size * D * 2 // 64  # fp16 rows of one head, 64-byte lines

    def line_address(pages, page, hk, line):
        """The address of one of a page's 2 x ``lines`` cache lines of head hk: K's, then V's."""
        kv, at = line // lines, line % lines
        return T.address_of(pages[page, kv, hk, at * 32 // D, at * 32 % D])

    @T.macro
    def ask(address):
        T.evaluate(
            T.call_llvm_intrin(
                "void",
                "llvm.prefetch.p0",
                address,
                0,
                PREFETCH_LOCALITY,
                1,  # read, data
            )
        )

    @T.macro
    def prefetch(pages, page_values, first, p, p0, hk, piece, pieces, npages):
        # piece `piece` of `pieces` of the next page's lines, also past the item's last page:
        # the thread's next item (the head's next split) starts there; on the item's first
        # page, that page's lines too, all at once (the dot products' loads would miss one by
        # one)
        if PREFETCH > 0:
            if p == p0 and piece == 0:
                for line in T.serial(2 * lines):
                    ask(line_address(pages, page_values[first + p], hk, line))
            if p + PREFETCH < npages:
                ahead: T.let[T.int32] = page_values[first + p + PREFETCH]
                for i in T.serial(2 * lines // pieces):
                    ask(line_address(pages, ahead, hk, piece * (2 * lines // pieces) + i))

    return prefetch


def _prefetch_whole_page(T, page_size: int, D: int, H_kv: int):
    """Ask for the whole page PREFETCH pages ahead (K and V of every KV head, one contiguous
    stretch) into L2, spread over the current page's ``pieces`` (KV head x key block), as
    :func:`_prefetch_page` does for one head's rows; the item's first page all at once.
    Measured with the resident layout (SmolLM2's shapes, 1000 keys, pages in order): none 0.73x,
    2 pages ahead 0.73-0.95x, into L1 1.0x of one page ahead into L2."""
    lines = 2 * H_kv * page_size * D * 2 // 64  # fp16, 64-byte lines

    @T.macro
    def ask(address):
        T.evaluate(T.call_llvm_intrin("void", "llvm.prefetch.p0", address, 0, PREFETCH_LOCALITY, 1))

    @T.macro
    def prefetch(pages, page_values, first, p, p0, piece, pieces, npages):
        if PREFETCH > 0:
            if p == p0 and piece == 0:
                for line in T.serial(lines):
                    ask(T.address_of(pages[page_values[first + p], 0, 0, 0, line * 32]))
            if p + PREFETCH < npages:
                ahead: T.let[T.int32] = page_values[first + p + PREFETCH]
                for i in T.serial(lines // pieces):
                    ask(T.address_of(pages[ahead, 0, 0, 0, (piece * (lines // pieces) + i) * 32]))

    return prefetch
