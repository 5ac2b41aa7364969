"""Decode attention over TVM's paged KV cache: one query token per sequence, every cached key.

Same signature as TVM's ``batch_decode_paged_kv`` (the cache calls it unchanged); the shared
pieces (online softmax in log2 units, masks, soft-capping) live in :mod:`.attention`.
"""

from __future__ import annotations

from . import cpu_attrs, prefetch_macro, vector_lanes
from .attention import DOT_LANES, LOG2E, MASKED, fast_exp2, key_visible, softcapped, tree

PREFETCH = 1  # pages ahead that a decode item prefetches (0: none)
# page ranges a decode step splits a sequence's cache into (merged at the end), each range all
# KV heads: 8 beat 6 and 12 at 200 and 1000 keys for SmolLM2's shapes, 2 threads
SPLITS = 8
# V dimensions summed at a time: G accumulators of 16 stay in registers (for SmolLM2's 3 heads,
# 8 and 32 were 1.0-1.1x slower)
VALUE_SLICE = 16
# register budget (bytes) of a head group's score partial sums, and of its V accumulators, where
# the target has 32 vector registers of 8 floats or more (AVX-512): below 640 B, 20 of them
# (Qwen2-0.5B's 2 keys x 7 heads); at 1 KiB they spilled (1.07-1.08x slower at 1000 keys)
GROUP_ACC = 640
# where it has 16 (AVX2; NEON's 32 of 4 floats): below 400 B, 12 of them (SmolLM2's 4 keys x 3
# heads fit). Qwen2-0.5B's 7 heads then score 1 key at a time and sum V 8 dimensions at a time:
# at 1000 keys 1.14-1.23x, at 200 1.02-1.07x from memory (EPYC Zen 3; its 46 stores a score
# block were spills)
GROUP_ACC_16 = 400


def decode_group_acc(target) -> int:
    """The register budget of a head group's sums for ``target`` (GROUP_ACC or GROUP_ACC_16)."""
    return GROUP_ACC if vector_lanes(target) == 16 else GROUP_ACC_16


def decode_heads_per_item(group: int, budget: int = GROUP_ACC) -> int:
    """Query heads of a GQA group scored together, sharing each K row's load and conversion:
    all of them while their partial sums stay in registers (below ``budget`` bytes), else the
    largest divisor of the group that does."""
    fits = [
        g
        for g in range(1, group + 1)
        if group % g == 0 and decode_keys_per_step(g, budget) * g * DOT_LANES * 4 < budget
    ]
    return max(fits, default=1)


def decode_value_slice(heads: int, head_dim: int, budget: int = GROUP_ACC) -> int:
    """V dimensions summed at a time for ``heads`` heads: the most that divide the head, are a
    multiple of the dot-product lanes, stay within VALUE_SLICE and keep the heads' accumulators
    below ``budget`` (16 for SmolLM2's 3 heads; for Qwen2-0.5B's 7, 16 at GROUP_ACC and 8 at
    GROUP_ACC_16)."""
    fits = [
        c
        for c in range(DOT_LANES, min(head_dim, VALUE_SLICE) + 1, DOT_LANES)
        if head_dim % c == 0 and heads * c * 4 < budget
    ]
    return max(fits, default=DOT_LANES)


def decode_keys_per_step(heads: int, budget: int = GROUP_ACC) -> int:
    """Keys scored side by side: enough independent FMA chains (keys x heads >= 8) to hide the
    FMA latency, few enough that their partial sums stay below ``budget`` bytes."""
    keys = 8
    while keys > 1 and (keys // 2) * heads >= 8:
        keys //= 2
    while keys > 1 and keys * heads * DOT_LANES * 4 >= budget:
        keys //= 2
    return keys


def _page_reduce(T, op, buf, g: int, n: int):
    """op over ``buf[g, 0:n]`` (n = 16 or 8) by halving vectors: the two 8-lane halves combined,
    then halves of the result down to one lane. A scalar tree loaded n scores just stored as
    vectors and took n - 1 steps. At 1200 keys, both in one process (EPYC Zen 3): Qwen2-0.5B's
    shapes (7 heads a group, each its own softmax) 1.05-1.08x from memory, 1.09x in cache;
    SmolLM2's 1.00x from memory."""
    v = buf[g, T.Ramp(0, 1, 8)]
    if n == 16:
        v = op(v, buf[g, T.Ramp(8, 1, 8)])
    v = op(T.Shuffle([v], [0, 1, 2, 3]), T.Shuffle([v], [4, 5, 6, 7]))
    v = op(T.Shuffle([v], [0, 1]), T.Shuffle([v], [2, 3]))
    return op(T.Shuffle([v], [0]), T.Shuffle([v], [1]))


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
    budget: int = GROUP_ACC,
):
    """One decode step's attention over the paged cache, in two parallel passes (``budget``:
    the register budget of a head group's sums, :func:`decode_group_acc` of the target).

    1. Work items are ranges of pages (SPLITS of them per sequence). An item reads its pages
       front to back, each page whole: K and V of every KV head, one contiguous stretch of the
       pool (pages are mostly consecutive there: the cache hands them out in order). It keeps
       an online-softmax state (max, sum, weighted V sum) per query head, updated page by page.
       G query heads of a GQA group score each K row together (one load and fp16 conversion
       for G dot products; the whole group while their partial sums fit the registers); V rows
       are summed a slice of dimensions at a time, whose G accumulators stay in registers over
       the page's keys.
    2. Per query head, the partial states are merged into the output and its lse.

    It replaced two layouts whose items each served one KV head (its 2 KiB of K and of V per
    page, strided by the other heads'): for SmolLM2's shapes, one that kept the group's whole
    V sums (24 registers for 3 x 64: spilled, a store per multiply-add); for the others, one
    that scored a range first, then summed V. Both builds in one process (AMD EPYC Zen 3,
    2 threads, from memory; pages in order / scattered; docs/performance.md):
    - 1000 keys: SmolLM2 1.37-1.42x / 1.21-1.29x; Qwen2-0.5B 1.25x / 1.23x; Llama-3-8B
      1.21x / 1.23x; Gemma 2 1.05-1.18x / 1.05-1.09x;
    - 200 keys: 0.99-1.10x / 0.97-1.17x."""
    from tvm.script import tirx as T

    if page_size not in (8, 16):  # _page_reduce's halving
        raise ValueError(f"decode attention takes pages of 8 or 16 keys, not {page_size}")
    H_qo, H_kv, D = num_qo_heads, num_kv_heads, head_dim
    group = H_qo // H_kv
    parts = D // DOT_LANES
    G = decode_heads_per_item(group, budget)
    NSB = group // G  # sub-blocks of G heads per group
    KS = decode_keys_per_step(G, budget)
    S = SPLITS
    VC = decode_value_slice(G, D, budget)

    attrs = cpu_attrs(global_symbol="batch_decode_paged_kv_cpu")
    merge = _merge_splits(T, H_qo, D, S, dtype)
    prefetch = _prefetch_page(T, page_size, D, H_kv)
    # a head sub-block's share of the next page's prefetch requests: one piece per key block
    # scored and one per V slice summed
    pieces_per_block = page_size // KS + D // VC
    score_block = _score_block(T, KS, G, parts)
    every_page = bool(window or softcap)  # pages whose scores need the mask's pass

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
                page_max = T.sblock_alloc_buffer((1,), "float32")
                b: T.let[T.int32] = item // S
                split: T.let[T.int32] = item % S
                first: T.let[T.int32] = page_indptr[b]
                npages: T.let[T.int32] = page_indptr[b + 1] - first
                # ranges of floor or ceil(npages / S) pages, the longer ones first: the caller
                # runs the first items and starts before its workers wake, so it takes the
                # extra pages (13 pages: 7 on the caller, 6 on the worker, not 6:7; the kernel
                # alone 1.07-1.10x at 100-300 keys from memory, 1.03x at 1000, EPYC Zen 3).
                # Ceil-sized ranges for all left 13 pages 8:5.
                p0: T.let[T.int32] = (split * npages + S - 1) // S
                p1: T.let[T.int32] = ((split + 1) * npages + S - 1) // S
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
                        for sb in T.serial(NSB):
                            h0: T.let[T.int32] = hk * group + sb * G  # the sub-block's first head
                            for kb in T.serial(page_size // KS):
                                prefetch(
                                    pages,
                                    page_values,
                                    first,
                                    p,
                                    p0,
                                    (hk * NSB + sb) * pieces_per_block + kb,
                                    H_kv * NSB * pieces_per_block,
                                    npages,
                                )
                                score_block(
                                    q_all,
                                    item * H_qo + h0,
                                    pages,
                                    page,
                                    hk,
                                    kb * KS,
                                    part,
                                    sums,
                                )
                                for g in T.unroll(G):
                                    for jj in T.vectorized(KS):
                                        score[g, kb * KS + jj] = sums[g * KS + jj]
                            for g in T.unroll(G):
                                # Every key of a full page is visible unless a window may hide
                                # some: without one (and without soft-capping), only the last
                                # page pays for the compare and select
                                if T.Or(used < page_size, T.bool(every_page)):
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
                                page_max[0] = T.max(
                                    m[h0 + g], _page_reduce(T, T.max, score, g, page_size)
                                )
                                rescale[g] = fast_exp2(T, m[h0 + g] - page_max[0])
                                m[h0 + g] = page_max[0]
                                lsum[h0 + g] = lsum[h0 + g] * rescale[g]
                                for j in T.vectorized(page_size):
                                    score[g, j] = T.if_then_else(
                                        score[g, j] > T.float32(MASKED),
                                        fast_exp2(T, score[g, j] - page_max[0]),
                                        T.float32(0),
                                    )
                                lsum[h0 + g] = lsum[h0 + g] + _page_reduce(
                                    T, lambda a, z: a + z, score, g, page_size
                                )
                            for c in T.serial(D // VC):
                                prefetch(
                                    pages,
                                    page_values,
                                    first,
                                    p,
                                    p0,
                                    (hk * NSB + sb) * pieces_per_block + page_size // KS + c,
                                    H_kv * NSB * pieces_per_block,
                                    npages,
                                )
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
                                        part_acc[b, h0 + g, split, c * VC + d] = (
                                            part_acc[b, h0 + g, split, c * VC + d] * rescale[g]
                                            + vacc[g, d]
                                        )
                for h in T.serial(H_qo):
                    part_m[b, h, split] = m[h]
                    part_l[b, h, split] = lsum[h]

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


def _prefetch_page(T, page_size: int, D: int, H_kv: int):
    """Ask for the whole page PREFETCH pages ahead (K and V of every KV head, one contiguous
    stretch) into L2, a cache line at a time, and for the item's first page all at once when it
    starts. The hardware prefetcher alone did not keep up: without these requests the kernel was
    0.75x as fast (SmolLM2's shapes, 1000 keys from memory, pages in order, EPYC Zen 3).

    The next page's requests are spread over the current page's ``pieces`` (KV head x sub-block
    of heads x (key block scored + V slice summed)), a few lines each: all of them at once stall
    the core while its load queue is full (0.72-0.78x, SmolLM2's shapes, EPYC Zen 3). Spread over
    the key blocks only (16 lines a piece for SmolLM2) the kernel was 1.14x slower from memory
    than over key blocks and V slices (8 lines) at 400 and 1200 keys. They also go past the
    item's last page, where the thread's next item starts. Two pages ahead: 0.98x; into L1:
    1.0x; every other line (the adjacent line left to the hardware): 0.80x."""
    lines = 2 * H_kv * page_size * D * 2 // 64  # fp16, 64-byte lines
    ask = prefetch_macro(T)

    @T.macro
    def prefetch(pages, page_values, first, p, p0, piece, pieces, npages):
        if PREFETCH > 0:
            if p == p0 and piece == 0:
                for line in T.serial(lines):
                    ask(T.address_of(pages[page_values[first + p], 0, 0, 0, line * 32]))
            if p + PREFETCH < npages:
                ahead: T.let[T.int32] = page_values[first + p + PREFETCH]
                share: T.let[T.int32] = (lines + pieces - 1) // pieces  # the last piece: fewer
                for i in T.serial(T.max(T.min(share, lines - piece * share), 0)):
                    ask(T.address_of(pages[ahead, 0, 0, 0, (piece * share + i) * 32]))

    return prefetch
