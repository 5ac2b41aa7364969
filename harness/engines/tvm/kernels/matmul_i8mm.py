"""The int8-activation GEMM on Arm's i8mm: ``smmla``, over the ``pack_q4_a8`` weight layout.

``smmla`` multiplies a 2 x 8 int8 matrix (two rows of X, 8 k each) by an 8 x 2 one (two weight
columns, the same 8 k) into a 2 x 2 int32 accumulator: 32 multiply-adds an instruction, twice
``sdot``'s 16. Which 8 k a pair covers does not matter as long as activations and weights agree,
so the weights keep the layout the ``sdot`` and x86 kernels read (``harness.quantization.
pack_q4_a8``) and the activations are quantized into an order that matches it:

- **Weights.** One 16-byte load of step j holds 4 columns x 4 k (k = 4j .. 4j + 3) in its low
  nibbles and the same columns at k + 16 in its high ones. After the mask and the shift, zipping
  the two registers by 32-bit words (``zip1``/``zip2``) gives [column c: 8 k][column c + 1: 8 k]
  and the same for c + 2, c + 3: the right-hand operands of two ``smmla``. So bundles are the
  same bytes for the sdot and i8mm builds; only the library differs.
- **Activations.** Rows are quantized in pairs into ``xp[m / 2, 2 K]``: per group and step j,
  16 bytes [row 2p: k 4j .. 4j + 3, 4j + 16 .. 4j + 19][row 2p + 1: the same k], the left-hand
  operand in one load.
- **Accumulators.** ``smmla`` leaves [r0 c0, r0 c1, r1 c0, r1 c1]; once a group, two 64-bit
  zips turn two of them into row r0's and row r1's 4 columns, and the float epilogue is the
  sdot kernel's.

The GEMV (decode: one row) stays on ``sdot`` (``q4_matmul_a8`` sends it there): with one row,
half of each ``smmla`` would multiply a padding row, leaving the same 16 useful products as an
``sdot`` plus the zips, and decode is bound by reading the weights anyway.
"""

from __future__ import annotations

from . import CPU_ATTRS
from .matmul import GROUP, LANES, ZERO

PAIR_ROWS = 2  # rows of X one smmla covers
COLUMNS = 8  # output columns per work item (half a column tile), as the sdot GEMM
# Row pairs per register tile: 2 pairs x 4 column pairs = 8 int32x4 accumulators and 8 float32x4
# sums, with the 4 weight operands, the zips' inputs and the scales within NEON's 32 registers.
PAIRS = 2
SMMLA = "llvm.aarch64.neon.smmla.v4i32.v16i8"


def _quantize_pairs(T, k: int):
    """Macro: row ``row`` of X -> its half of ``xp`` (module docstring), its scale ``xd`` and its
    zero-point term ``xz`` = 7 * sum(xq) per group: the sdot kernels' quantization, reordered."""
    groups = k // GROUP

    @T.macro
    def quantize(X, xp, xd, xz, row, amax, total):
        for g in T.serial(groups):
            amax[0] = T.float32(0)
            for i in T.serial(GROUP):
                amax[0] = T.max(amax[0], T.fabs(X[row, g * GROUP + i]))
            total[0] = 0
            for i in T.serial(GROUP):
                # k = 32 g + i: step (i % 16) // 4, low or high nibble i // 16, kk i % 4
                xp[row // 2, g * 64 + i % 16 // 4 * 16 + row % 2 * 8 + i // 16 * 4 + i % 4] = (
                    T.Cast(
                        "int8",
                        T.round(
                            X[row, g * GROUP + i]
                            * T.if_then_else(
                                amax[0] > T.float32(0), T.float32(127) / amax[0], T.float32(0)
                            )
                        ),
                    )
                )
                total[0] = total[0] + T.Cast(
                    "int32",
                    xp[row // 2, g * 64 + i % 16 // 4 * 16 + row % 2 * 8 + i // 16 * 4 + i % 4],
                )
            xd[row, g] = amax[0] / T.float32(127)
            xz[row, g] = total[0] * ZERO

    return quantize


def _zip32(T, lo, hi, first: bool):
    """zip1 / zip2 of two uint8x16 registers by 32-bit words, as int8x16 (an smmla operand)."""
    lanes = [0, 4, 1, 5] if first else [2, 6, 3, 7]
    return T.reinterpret(
        "int8x16",
        T.Shuffle([T.reinterpret("int32x4", lo), T.reinterpret("int32x4", hi)], lanes),
    )


def _row_sum(T, acc, facc, swv, xd, xz, row0, g, p, qtr, half: int):
    """Row 2 p + ``half``'s float sums for the 4 columns of quarter ``qtr`` after group g: its
    lanes of the two column pairs' accumulators (a 64-bit zip), as the sdot epilogue takes them."""
    row = row0 + p * 2 + half
    return facc[T.ramp((p * 2 + half) * COLUMNS + qtr * 4, 1, 4)] + T.Cast(
        "float32x4",
        T.Shuffle(
            [
                acc[T.ramp((p * 4 + qtr * 2) * 4, 1, 4)],
                acc[T.ramp((p * 4 + qtr * 2 + 1) * 4, 1, 4)],
            ],
            [half * 2, half * 2 + 1, half * 2 + 4, half * 2 + 5],
        )
        - T.broadcast(xz[row, g], 4),
    ) * (swv[T.ramp(qtr * 4, 1, 4)] * T.broadcast(xd[row, g], 4))


def _tile(T, k: int, pairs: int, single: bool = False):
    """Macro: Y[row0 : row0 + 2 pairs, the 8 columns of half h0 of tile t] from ``pairs`` row
    pairs; ``single``: one row (the last of an odd M), paired with a padding row whose products
    are computed and dropped."""
    groups = k // GROUP
    rows = 1 if single else 2 * pairs

    @T.macro
    def tile(xp, xd, xz, wq, sc, b_, Y, t, h0, row0, acc, facc, wbuf, swv):
        for r in T.unroll(rows * 2):
            facc[T.ramp(r * 4, 1, 4)] = T.broadcast(T.float32(0), 4)
        for g in T.serial(groups):
            for a in T.unroll(pairs * 4):
                acc[T.ramp(a * 4, 1, 4)] = T.broadcast(T.int32(0), 4)
            for j in T.unroll(4):
                # wbuf per quarter (4 columns): low nibbles, high nibbles, zip1, zip2
                for qtr in T.unroll(2):
                    wbuf[T.ramp(qtr * 64, 1, 16)] = wq.vload(
                        [t, g, j * 64 + h0 * 32 + qtr * 16], "uint8x16"
                    ) & T.broadcast(T.uint8(15), 16)
                    wbuf[T.ramp(qtr * 64 + 16, 1, 16)] = T.shift_right(
                        wq.vload([t, g, j * 64 + h0 * 32 + qtr * 16], "uint8x16"),
                        T.broadcast(T.uint8(4), 16),
                    )
                    wbuf[T.ramp(qtr * 64 + 32, 1, 16)] = T.reinterpret(
                        "uint8x16",
                        _zip32(
                            T,
                            wbuf[T.ramp(qtr * 64, 1, 16)],
                            wbuf[T.ramp(qtr * 64 + 16, 1, 16)],
                            True,
                        ),
                    )
                    wbuf[T.ramp(qtr * 64 + 48, 1, 16)] = T.reinterpret(
                        "uint8x16",
                        _zip32(
                            T,
                            wbuf[T.ramp(qtr * 64, 1, 16)],
                            wbuf[T.ramp(qtr * 64 + 16, 1, 16)],
                            False,
                        ),
                    )
                for p in T.unroll(pairs):
                    for cp in T.unroll(4):  # column pair cp: columns 2 cp, 2 cp + 1
                        acc[T.ramp((p * 4 + cp) * 4, 1, 4)] = T.call_llvm_pure_intrin(
                            "int32x4",
                            SMMLA,
                            acc[T.ramp((p * 4 + cp) * 4, 1, 4)],
                            xp.vload([row0 // 2 + p, g * 64 + j * 16], "int8x16"),
                            T.reinterpret(
                                "int8x16", wbuf[T.ramp(cp // 2 * 64 + 32 + cp % 2 * 16, 1, 16)]
                            ),
                        )
            for qtr in T.unroll(2):
                swv[T.ramp(qtr * 4, 1, 4)] = T.Cast(
                    "float32x4", sc[t, g, T.ramp(h0 * COLUMNS + qtr * 4, 1, 4)]
                )
                for p in T.unroll(pairs):
                    facc[T.ramp(p * 2 * COLUMNS + qtr * 4, 1, 4)] = _row_sum(
                        T, acc, facc, swv, xd, xz, row0, g, p, qtr, 0
                    )
                    if not single:
                        facc[T.ramp((p * 2 + 1) * COLUMNS + qtr * 4, 1, 4)] = _row_sum(
                            T, acc, facc, swv, xd, xz, row0, g, p, qtr, 1
                        )
        for r in T.unroll(rows):
            Y[row0 + r, T.ramp(t * LANES + h0 * COLUMNS, 1, COLUMNS)] = (
                facc[T.ramp(r * COLUMNS, 1, COLUMNS)]
                + b_[T.ramp(t * LANES + h0 * COLUMNS, 1, COLUMNS)]
            )

    return tile


def gemm(n: int, k: int, scale_dtype: str, tile_bytes: int, block_rows: int):
    """y[M, N] = x[M, K] @ dequant(Wq, S).T + b on smmla (M > 1: prefill), ``q4_matmul_a8``'s
    signature; work items as the sdot GEMM's (a block of rows x a column tile x a half)."""
    from tvm.script import tirx as T

    tiles, groups = n // LANES, k // GROUP
    parts = LANES // COLUMNS
    tile_rows = PAIRS * PAIR_ROWS
    quantize = _quantize_pairs(T, k)
    many = _tile(T, k, PAIRS)
    pair = _tile(T, k, 1)  # rows left over after the register tiles
    single = _tile(T, k, 1, single=True)  # the last row of an odd M
    assert block_rows % tile_rows == 0  # a block's pairs never straddle two blocks

    @T.prim_func(private=True, s_tir=True)
    def func(
        x: T.handle,
        wq: T.Buffer((tiles, groups, tile_bytes), "uint8"),
        sc: T.Buffer((tiles, groups, LANES), scale_dtype),
        b_: T.Buffer((n,), "float32"),
        y: T.handle,
    ):
        T.func_attr(CPU_ATTRS)
        m = T.int64()
        X = T.match_buffer(x, (m, k), "float32")
        Y = T.match_buffer(y, (m, n), "float32")
        # An odd M's padding row is never written: its products land in lanes no row reads.
        xp = T.alloc_buffer((T.ceildiv(m, 2), k * 2), "int8")
        xd = T.alloc_buffer((m, groups), "float32")
        xz = T.alloc_buffer((m, groups), "int32")
        for row in T.parallel(m):
            with T.sblock("quantize"):
                T.reads()
                T.writes()
                amax = T.sblock_alloc_buffer((1,), "float32")
                total = T.sblock_alloc_buffer((1,), "int32")
                quantize(X, xp, xd, xz, row, amax, total)
        for item in T.parallel(T.ceildiv(m, block_rows) * tiles * parts):
            with T.sblock("tile"):
                T.reads()
                T.writes()
                acc = T.sblock_alloc_buffer((PAIRS * 16,), "int32")
                facc = T.sblock_alloc_buffer((tile_rows * COLUMNS,), "float32")
                wbuf = T.sblock_alloc_buffer((128,), "uint8")
                swv = T.sblock_alloc_buffer((COLUMNS,), "float32")
                t: T.let[T.int64] = item // parts % tiles
                h: T.let[T.int64] = item % parts
                row0: T.let[T.int64] = item // (tiles * parts) * block_rows
                count: T.let[T.int64] = T.min(T.int64(block_rows), m - row0)
                for mo in T.serial(count // tile_rows):
                    many(
                        xp, xd, xz, wq, sc, b_, Y, t, h, row0 + mo * tile_rows, acc, facc, wbuf, swv
                    )
                for mt in T.serial(count % tile_rows // PAIR_ROWS):
                    pair(
                        xp,
                        xd,
                        xz,
                        wq,
                        sc,
                        b_,
                        Y,
                        t,
                        h,
                        row0 + count // tile_rows * tile_rows + mt * PAIR_ROWS,
                        acc,
                        facc,
                        wbuf,
                        swv,
                    )
                if count % PAIR_ROWS == 1:
                    single(xp, xd, xz, wq, sc, b_, Y, t, h, row0 + count - 1, acc, facc, wbuf, swv)

    return func
