"""Thread-bound matmul kernels for GPU targets (CUDA, OpenCL/Adreno, Vulkan, Metal).

Same contract as ``kernels.matmul`` (the CPU kernels): identical buffer signatures and tiled
weight layouts, so ``Linear`` swaps one for the other and the weight shards do not change.

- x ``[m, k]`` float32 (``m`` symbolic, int64), y ``[m, n]`` float32, bias ``[n]`` float32.
- q4: words ``[n / LANES, k / PACK, LANES]`` uint32 (eight 4-bit values of one output column per
  word, the j-th at bits ``4 j``), scales ``[n / LANES, k / GROUP, LANES]``; value = (q - 7) * s.
- f32: weight ``[n / LANES, k, LANES]``.

In both layouts the LANES columns of one tile are contiguous for a given k, so threads that
differ only in their lane read consecutive words: the loads below are coalesced.

- **GEMV (decode, rows="one").** One block per (row, column tile). ``GEMV_KSPLIT`` groups of
  LANES threads split K (thread ``t`` takes lane ``t % LANES`` and every ``GEMV_KSPLIT``-th
  k-step starting at ``t // LANES``, so a block reads one contiguous run of words per step);
  the partial sums meet in shared memory and, in a second pass over the same threads (the
  barrier between the passes is inserted by TVM's ThreadSync), the first LANES threads finish
  the reduction.
- **GEMM (prefill, rows="many").** One block per (block of ``GEMM_BLOCK_ROWS`` rows of x, column
  tile); thread ``t`` owns lane ``t % LANES`` and ``GEMM_THREAD_ROWS`` rows (``t // LANES`` plus
  multiples of ``GEMM_ROW_GROUPS``), walks K serially and dequantizes each weight once, in
  registers, for all of its rows. Rows past ``m`` read a valid row and skip the store.

Written already scheduled (``tirx.is_scheduled``) so dlight leaves them alone. Knobs are the
module constants; every block has at most 256 threads (Adreno's limit) and uses < 16 KiB of
shared memory.
"""

from __future__ import annotations

from functools import cache

from .matmul import GROUP, LANES, PACK, ZERO, check_shape

GEMV_KSPLIT = 16  # thread groups splitting K in the GEMV; threads per block = LANES * GEMV_KSPLIT
GEMV_THREADS = LANES * GEMV_KSPLIT  # 256
GEMM_THREAD_ROWS = 4  # rows of x per GEMM thread (register tile: one weight, GEMM_THREAD_ROWS FMAs)
GEMM_ROW_GROUPS = 16  # thread groups per GEMM block along rows; threads per block = LANES * this
GEMM_THREADS = LANES * GEMM_ROW_GROUPS  # 256
GEMM_BLOCK_ROWS = GEMM_THREAD_ROWS * GEMM_ROW_GROUPS  # 64 rows of x per GEMM block


@cache
def q4_matmul_gpu(n: int, k: int, scale_dtype: str, rows: str):
    """y[M, N] = x[M, K] @ dequant(Wq, S).T + b on a GPU.
    ``rows``: "one" (GEMV) or "many" (GEMM)."""
    from tvm.script import tirx as T

    check_shape(n, k, True)
    tiles, words, groups = n // LANES, k // PACK, k // GROUP
    words_per_group = GROUP // PACK
    steps = (words + GEMV_KSPLIT - 1) // GEMV_KSPLIT  # k-steps (words) per GEMV thread

    if rows == "one":

        @T.prim_func(private=True, s_tir=True)
        def gemv(
            x: T.handle,
            wq: T.Buffer((tiles, words, LANES), "uint32"),
            sc: T.Buffer((tiles, groups, LANES), scale_dtype),
            b_: T.Buffer((n,), "float32"),
            y: T.handle,
        ):
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
            m = T.int64()
            X = T.match_buffer(x, (m, k), "float32")
            Y = T.match_buffer(y, (m, n), "float32")
            for row in T.thread_binding(m, thread="blockIdx.y"):
                for tile in T.thread_binding(tiles, thread="blockIdx.x"):
                    with T.sblock("tile"):
                        # Allocated inside the block-bound loops: one per thread block (__shared__).
                        partial = T.sblock_alloc_buffer((GEMV_THREADS,), "float32", scope="shared")
                        for t in T.thread_binding(GEMV_THREADS, thread="threadIdx.x"):
                            with T.sblock("partial"):
                                acc = T.sblock_alloc_buffer((1,), "float32", scope="local")
                                acc[0] = T.float32(0)
                                for step in T.serial(steps):
                                    w: T.let[T.int32] = step * GEMV_KSPLIT + t // LANES
                                    if w < words:
                                        word: T.let[T.uint32] = wq[tile, w, t % LANES]
                                        s: T.let[T.float32] = T.Cast(
                                            "float32", sc[tile, w // words_per_group, t % LANES]
                                        )
                                        for j in T.unroll(PACK):
                                            acc[0] = acc[0] + X[row, w * PACK + j] * (
                                                T.Cast(
                                                    "float32",
                                                    T.Cast(
                                                        "int32",
                                                        T.shift_right(word, T.uint32(j * 4))
                                                        & T.uint32(15),
                                                    )
                                                    - ZERO,
                                                )
                                                * s
                                            )
                                partial[t] = acc[0]
                        # Second pass over the same threads; ThreadSync puts the barrier in between.
                        for t in T.thread_binding(GEMV_THREADS, thread="threadIdx.x"):
                            with T.sblock("reduce"):
                                total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                                if t < LANES:
                                    total[0] = T.float32(0)
                                    for r in T.serial(GEMV_KSPLIT):
                                        total[0] = total[0] + partial[r * LANES + t]
                                    Y[row, tile * LANES + t] = total[0] + b_[tile * LANES + t]

        return gemv

    @T.prim_func(private=True, s_tir=True)
    def gemm(
        x: T.handle,
        wq: T.Buffer((tiles, words, LANES), "uint32"),
        sc: T.Buffer((tiles, groups, LANES), scale_dtype),
        b_: T.Buffer((n,), "float32"),
        y: T.handle,
    ):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        m = T.int64()
        X = T.match_buffer(x, (m, k), "float32")
        Y = T.match_buffer(y, (m, n), "float32")
        for rb in T.thread_binding(T.ceildiv(m, T.int64(GEMM_BLOCK_ROWS)), thread="blockIdx.y"):
            for tile in T.thread_binding(tiles, thread="blockIdx.x"):
                for t in T.thread_binding(GEMM_THREADS, thread="threadIdx.x"):
                    with T.sblock("gemm"):
                        acc = T.sblock_alloc_buffer((GEMM_THREAD_ROWS,), "float32", scope="local")
                        # Thread t: rows row0, row0 + ROW_GROUPS, ...
                        # (a warp covers 2 rows x 16 columns).
                        row0: T.let[T.int64] = rb * GEMM_BLOCK_ROWS + t // LANES
                        for r in T.unroll(GEMM_THREAD_ROWS):
                            acc[r] = T.float32(0)
                        for g in T.serial(groups):
                            s: T.let[T.float32] = T.Cast("float32", sc[tile, g, t % LANES])
                            for wg in T.serial(words_per_group):
                                word: T.let[T.uint32] = wq[
                                    tile, g * words_per_group + wg, t % LANES
                                ]
                                for j in T.unroll(PACK):
                                    wv: T.let[T.float32] = (
                                        T.Cast(
                                            "float32",
                                            T.Cast(
                                                "int32",
                                                T.shift_right(word, T.uint32(j * 4)) & T.uint32(15),
                                            )
                                            - ZERO,
                                        )
                                        * s
                                    )
                                    for r in T.unroll(GEMM_THREAD_ROWS):
                                        # Out-of-range rows read the last row
                                        # (no branch); their result is dropped.
                                        acc[r] = (
                                            acc[r]
                                            + X[
                                                T.min(row0 + r * GEMM_ROW_GROUPS, m - 1),
                                                (g * words_per_group + wg) * PACK + j,
                                            ]
                                            * wv
                                        )
                        for r in T.unroll(GEMM_THREAD_ROWS):
                            if row0 + r * GEMM_ROW_GROUPS < m:
                                Y[row0 + r * GEMM_ROW_GROUPS, tile * LANES + t % LANES] = (
                                    acc[r] + b_[tile * LANES + t % LANES]
                                )

    return gemm


@cache
def f32_matmul_gpu(n: int, k: int, rows: str):
    """y[M, N] = x[M, K] @ W.T + b on a GPU for
    unquantized weights tiled as [N / LANES, K, LANES]."""
    from tvm.script import tirx as T

    check_shape(n, k, False)
    tiles = n // LANES
    steps = (k + GEMV_KSPLIT - 1) // GEMV_KSPLIT

    if rows == "one":

        @T.prim_func(private=True, s_tir=True)
        def gemv(
            x: T.handle,
            w: T.Buffer((tiles, k, LANES), "float32"),
            b_: T.Buffer((n,), "float32"),
            y: T.handle,
        ):
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
            m = T.int64()
            X = T.match_buffer(x, (m, k), "float32")
            Y = T.match_buffer(y, (m, n), "float32")
            for row in T.thread_binding(m, thread="blockIdx.y"):
                for tile in T.thread_binding(tiles, thread="blockIdx.x"):
                    with T.sblock("tile"):
                        # Allocated inside the block-bound loops: one per thread block (__shared__).
                        partial = T.sblock_alloc_buffer((GEMV_THREADS,), "float32", scope="shared")
                        for t in T.thread_binding(GEMV_THREADS, thread="threadIdx.x"):
                            with T.sblock("partial"):
                                acc = T.sblock_alloc_buffer((1,), "float32", scope="local")
                                acc[0] = T.float32(0)
                                for step in T.serial(steps):
                                    kk: T.let[T.int32] = step * GEMV_KSPLIT + t // LANES
                                    if kk < k:
                                        acc[0] = acc[0] + X[row, kk] * w[tile, kk, t % LANES]
                                partial[t] = acc[0]
                        for t in T.thread_binding(GEMV_THREADS, thread="threadIdx.x"):
                            with T.sblock("reduce"):
                                total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                                if t < LANES:
                                    total[0] = T.float32(0)
                                    for r in T.serial(GEMV_KSPLIT):
                                        total[0] = total[0] + partial[r * LANES + t]
                                    Y[row, tile * LANES + t] = total[0] + b_[tile * LANES + t]

        return gemv

    @T.prim_func(private=True, s_tir=True)
    def gemm(
        x: T.handle,
        w: T.Buffer((tiles, k, LANES), "float32"),
        b_: T.Buffer((n,), "float32"),
        y: T.handle,
    ):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        m = T.int64()
        X = T.match_buffer(x, (m, k), "float32")
        Y = T.match_buffer(y, (m, n), "float32")
        for rb in T.thread_binding(T.ceildiv(m, T.int64(GEMM_BLOCK_ROWS)), thread="blockIdx.y"):
            for tile in T.thread_binding(tiles, thread="blockIdx.x"):
                for t in T.thread_binding(GEMM_THREADS, thread="threadIdx.x"):
                    with T.sblock("gemm"):
                        acc = T.sblock_alloc_buffer((GEMM_THREAD_ROWS,), "float32", scope="local")
                        row0: T.let[T.int64] = rb * GEMM_BLOCK_ROWS + t // LANES
                        for r in T.unroll(GEMM_THREAD_ROWS):
                            acc[r] = T.float32(0)
                        for kk in T.serial(k):
                            wv: T.let[T.float32] = w[tile, kk, t % LANES]
                            for r in T.unroll(GEMM_THREAD_ROWS):
                                acc[r] = (
                                    acc[r] + X[T.min(row0 + r * GEMM_ROW_GROUPS, m - 1), kk] * wv
                                )
                        for r in T.unroll(GEMM_THREAD_ROWS):
                            if row0 + r * GEMM_ROW_GROUPS < m:
                                Y[row0 + r * GEMM_ROW_GROUPS, tile * LANES + t % LANES] = (
                                    acc[r] + b_[tile * LANES + t % LANES]
                                )

    return gemm
