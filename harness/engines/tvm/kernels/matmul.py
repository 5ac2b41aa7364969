"""Hand-scheduled CPU matmul kernels with group dequantization fused in.

TVM's default relax pipeline leaves CPU matmuls as naive triple loops. These kernels are written
already scheduled (``tirx.is_scheduled``) so the pipeline keeps them as they are:

- **Weight layout.** A linear weight W[N, K] is stored *column-tiled*: ``[N / LANES, K, LANES]``
  (float) or ``[N / LANES, K / 8, LANES]`` uint32 words holding eight 4-bit values of one output
  row each (quantized). One vector load then yields LANES output columns for one k, so the inner
  loop is a broadcast-FMA over LANES contiguous lanes and LLVM emits AVX2/NEON vectors.
- **GEMV (decode, M == 1).** Parallel over column tiles; each tile walks K once, dequantizing in
  registers, accumulating in a LANES-wide register accumulator. Weights are read exactly once,
  which is what decode speed is bound by.
- **GEMM (prefill, M > 1).** Parallel over column tiles; each tile first dequantizes its K x LANES
  strip into a thread-local buffer (once, not once per row), then streams the rows of X through a
  ROWS x LANES register tile.

All knobs are the module constants below.
"""

from __future__ import annotations

from functools import cache

from . import CPU_ATTRS

LANES = 16  # output columns per tile: two AVX2 / four NEON float registers
ROWS = 4  # rows of X per GEMM register tile (ROWS * LANES / 8 accumulators on AVX2)
BLOCK_ROWS = 64  # rows of X per GEMM work item: 64 x K floats stay in L2 while tiles stream by
GROUP = 32  # quantization group size along K (the study's setting)
PACK = 8  # 4-bit values per uint32 word
ZERO = 7  # symmetric int4 stored as q + 7 in [0, 14], as MLC's q4f*_1 presets do
CHAINS = 4  # independent accumulators per lane in the GEMV inner loop (the code sums exactly 4)


def check_shape(n: int, k: int, quantized: bool) -> None:
    if n % LANES:
        raise ValueError(f"output features {n} must be a multiple of {LANES}")
    if quantized and k % GROUP:
        raise ValueError(f"input features {k} must be a multiple of the group size {GROUP}")


def _stream_rows(T, k: int):
    """Macro: Y[row0 : row0 + count, tile] = X[rows] @ strip + b, ROWS rows per register tile."""

    @T.macro
    def stream(X, strip, acc, b_, Y, tile, row0, count):
        for mo in T.serial(count // ROWS):
            for r in T.unroll(ROWS):
                for lane in T.vectorized(LANES):
                    acc[r, lane] = T.float32(0)
            for kk in T.serial(k):
                for r in T.unroll(ROWS):
                    for lane in T.vectorized(LANES):
                        acc[r, lane] = acc[r, lane] + X[row0 + mo * ROWS + r, kk] * strip[kk, lane]
            for r in T.unroll(ROWS):
                for lane in T.vectorized(LANES):
                    Y[row0 + mo * ROWS + r, tile * LANES + lane] = (
                        acc[r, lane] + b_[tile * LANES + lane]
                    )
        for mt in T.serial(count % ROWS):
            for lane in T.vectorized(LANES):
                acc[0, lane] = T.float32(0)
            for kk in T.serial(k):
                for lane in T.vectorized(LANES):
                    acc[0, lane] = (
                        acc[0, lane] + X[row0 + count - count % ROWS + mt, kk] * strip[kk, lane]
                    )
            for lane in T.vectorized(LANES):
                Y[row0 + count - count % ROWS + mt, tile * LANES + lane] = (
                    acc[0, lane] + b_[tile * LANES + lane]
                )

    return stream


@cache
def q4_matmul(n: int, k: int, scale_dtype: str, rows: str):
    """y[M, N] = x[M, K] @ dequant(Wq, S).T + b.
    ``rows`` is "one" (decode GEMV) or "many" (GEMM)."""
    from tvm.script import tirx as T

    check_shape(n, k, True)
    tiles, words, groups = n // LANES, k // PACK, k // GROUP
    words_per_group = GROUP // PACK

    if rows == "one":

        @T.prim_func(private=True, s_tir=True)
        def gemv(
            x: T.handle,
            wq: T.Buffer((tiles, words, LANES), "uint32"),
            sc: T.Buffer((tiles, groups, LANES), scale_dtype),
            b_: T.Buffer((n,), "float32"),
            y: T.handle,
        ):
            T.func_attr(CPU_ATTRS)
            m = T.int64()
            X = T.match_buffer(x, (m, k), "float32")
            Y = T.match_buffer(y, (m, n), "float32")
            xsum = T.alloc_buffer((groups,), "float32")
            for row in T.serial(m):
                # sum_k x_k (q_k - 7) s = s (sum_k x_k q_k - 7 sum_k x_k): the zero point costs one
                # multiply-add per group instead of one subtraction per weight.
                for g in T.serial(groups):
                    xsum[g] = T.float32(0)
                    for kk in T.serial(GROUP):
                        xsum[g] = xsum[g] + X[row, g * GROUP + kk]
                for tile in T.parallel(tiles):
                    with T.sblock("tile"):
                        acc = T.sblock_alloc_buffer((LANES,), "float32")
                        # CHAINS independent partial sums per lane hide the FMA latency.
                        gacc = T.sblock_alloc_buffer((CHAINS, LANES), "float32")
                        for lane in T.vectorized(LANES):
                            acc[lane] = T.float32(0)
                        for g in T.serial(groups):
                            for c in T.unroll(CHAINS):
                                for lane in T.vectorized(LANES):
                                    gacc[c, lane] = T.float32(0)
                            for w in T.serial(words_per_group):
                                for j in T.unroll(PACK):
                                    for lane in T.vectorized(LANES):
                                        gacc[j % CHAINS, lane] = gacc[j % CHAINS, lane] + X[
                                            row, g * GROUP + w * PACK + j
                                        ] * T.Cast(
                                            "float32",
                                            T.shift_right(
                                                wq[tile, g * words_per_group + w, lane],
                                                T.uint32(j * 4),
                                            )
                                            & T.uint32(15),
                                        )
                            for lane in T.vectorized(LANES):
                                acc[lane] = acc[lane] + (
                                    gacc[0, lane]
                                    + gacc[1, lane]
                                    + gacc[2, lane]
                                    + gacc[3, lane]
                                    - T.float32(ZERO) * xsum[g]
                                ) * T.Cast("float32", sc[tile, g, lane])
                        for lane in T.vectorized(LANES):
                            Y[row, tile * LANES + lane] = acc[lane] + b_[tile * LANES + lane]

        return gemv

    stream = _stream_rows(T, k)

    @T.prim_func(private=True, s_tir=True)
    def gemm(
        x: T.handle,
        wq: T.Buffer((tiles, words, LANES), "uint32"),
        sc: T.Buffer((tiles, groups, LANES), scale_dtype),
        b_: T.Buffer((n,), "float32"),
        y: T.handle,
    ):
        T.func_attr(CPU_ATTRS)
        m = T.int64()
        X = T.match_buffer(x, (m, k), "float32")
        Y = T.match_buffer(y, (m, n), "float32")
        # Work items are (block of BLOCK_ROWS rows of X) x (column tile), tiles inner: the
        # threads' contiguous ranges of items then reuse one X block from cache across tiles.
        for item in T.parallel(T.ceildiv(m, BLOCK_ROWS) * tiles):
            with T.sblock("tile"):
                T.reads()
                T.writes()
                # The tile's K x LANES strip is dequantized once per row block, not per row.
                strip = T.sblock_alloc_buffer((k, LANES), "float32", scope="global")
                acc = T.sblock_alloc_buffer((ROWS, LANES), "float32")
                tile: T.let[T.int64] = item % tiles
                row0: T.let[T.int64] = item // tiles * BLOCK_ROWS
                for g in T.serial(groups):
                    for w in T.serial(words_per_group):
                        for j in T.unroll(PACK):
                            for lane in T.vectorized(LANES):
                                strip[g * GROUP + w * PACK + j, lane] = T.Cast(
                                    "float32",
                                    T.Cast(
                                        "int32",
                                        T.shift_right(
                                            wq[tile, g * words_per_group + w, lane], T.uint32(j * 4)
                                        )
                                        & T.uint32(15),
                                    )
                                    - ZERO,
                                ) * T.Cast("float32", sc[tile, g, lane])
                stream(X, strip, acc, b_, Y, tile, row0, T.min(T.int64(BLOCK_ROWS), m - row0))

    return gemm


@cache
def f32_matmul(n: int, k: int, rows: str):
    """y[M, N] = x[M, K] @ W.T + b for unquantized weights tiled as [N / LANES, K, LANES]."""
    from tvm.script import tirx as T

    check_shape(n, k, False)
    tiles = n // LANES

    if rows == "one":

        @T.prim_func(private=True, s_tir=True)
        def gemv(
            x: T.handle,
            w: T.Buffer((tiles, k, LANES), "float32"),
            b_: T.Buffer((n,), "float32"),
            y: T.handle,
        ):
            T.func_attr(CPU_ATTRS)
            m = T.int64()
            X = T.match_buffer(x, (m, k), "float32")
            Y = T.match_buffer(y, (m, n), "float32")
            for row in T.serial(m):
                for tile in T.parallel(tiles):
                    with T.sblock("tile"):
                        acc = T.sblock_alloc_buffer((LANES,), "float32")
                        for lane in T.vectorized(LANES):
                            acc[lane] = T.float32(0)
                        for kk in T.serial(k):
                            for lane in T.vectorized(LANES):
                                acc[lane] = acc[lane] + X[row, kk] * w[tile, kk, lane]
                        for lane in T.vectorized(LANES):
                            Y[row, tile * LANES + lane] = acc[lane] + b_[tile * LANES + lane]

        return gemv

    stream = _stream_rows(T, k)

    @T.prim_func(private=True, s_tir=True)
    def gemm(
        x: T.handle,
        w: T.Buffer((tiles, k, LANES), "float32"),
        b_: T.Buffer((n,), "float32"),
        y: T.handle,
    ):
        T.func_attr(CPU_ATTRS)
        m = T.int64()
        X = T.match_buffer(x, (m, k), "float32")
        Y = T.match_buffer(y, (m, n), "float32")
        for item in T.parallel(T.ceildiv(m, BLOCK_ROWS) * tiles):
            with T.sblock("tile"):
                T.reads()
                T.writes()
                strip = T.sblock_alloc_buffer((k, LANES), "float32", scope="global")
                acc = T.sblock_alloc_buffer((ROWS, LANES), "float32")
                tile: T.let[T.int64] = item % tiles
                row0: T.let[T.int64] = item // tiles * BLOCK_ROWS
                for kk in T.serial(k):
                    for lane in T.vectorized(LANES):
                        strip[kk, lane] = w[tile, kk, lane]
                stream(X, strip, acc, b_, Y, tile, row0, T.min(T.int64(BLOCK_ROWS), m - row0))

    return gemm
