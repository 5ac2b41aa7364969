"""CPU matmuls on integer dot-product instructions: int8 activations x 4-bit weights.

The float kernels of ``kernels.matmul`` dequantize every weight to fp32 and spend one FMA per
multiply-add. Here activations are quantized to int8 per row and group of 32 (one fp32 scale
each, as llama.cpp's Q8_0), so one group's dot product is integer arithmetic that the CPU does
32 or 64 lanes at a time, and the float work is one scale multiply per group:

    y[m, n] = sum_g  xd[m, g] * sw[n, g] * (sum_k xq[m, k] * q[n, k]  -  7 * sum_k xq[m, k])

where q in [0, 14] is the stored weight (w / sw + 7, as q4f16_1 stores it) and the last term
removes the zero point once per group instead of once per weight.

- **x86 (AVX2).** ``vpmaddubsw`` multiplies 32 unsigned weight bytes by 32 signed activation
  bytes and adds neighbouring pairs into 16 int16 lanes; 8 of those (one group of 32 k) are
  summed in int16 (|q * x| <= 14 * 127, 16 products per lane: no overflow), then ``vpmaddwd``
  by ones widens to 8 int32 lanes, one per output column.
- **x86 (AVX-512 VNNI, AVX-VNNI).** ``vpdpbusd`` adds four unsigned-weight x signed-activation
  products into each int32 lane in one instruction: 16 columns per 512-bit register (AVX-512
  VNNI: Zen 4/5, Ice Lake and later Xeons) or 8 per 256-bit one (AVX-VNNI: Intel client cores
  since Alder Lake). The accumulator starts at -7 * sum(xq) of its group, so the zero point
  costs nothing in the loop.
- **ARM (+dotprod).** ``sdot`` adds four int8 products into each int32 lane directly.
- **ARM (+i8mm).** ``smmla`` multiplies two rows by two columns over 8 k at once: the GEMM in
  ``kernels.matmul_i8mm`` (same weight layout); the GEMV stays on ``sdot``.

**Weight layout** (``harness.quantization.pack_q4_a8``): per column tile of 16 and group of 32,
256 bytes ordered [step j 0..3][half h 0..1][column c 0..7][kk 0..3]; each byte holds the k of
step j (low nibble) and of step j + 4 (high nibble), k = 8 * 4 * g + 4 * step + kk. One 32-byte
load thus gives, after a mask and a shift, two registers of 8 columns x 4 consecutive k: the
operand ``vpmaddubsw`` and ``sdot`` want against 4 broadcast activation bytes.

Each matmul quantizes its input rows first (a parallel loop), then runs the products (a second
parallel loop), so a Linear stays one call with the float kernels' signature.
"""

from __future__ import annotations

from functools import cache

from . import CPU_ATTRS, prefetch_macro
from .attention import tree
from .elementwise import LANES as NORM_LANES
from .elementwise import inverse_rms, silu_times
from .matmul import GROUP, LANES, ZERO, check_shape

ROWS = 4  # rows of X per register tile (GEMM)
BLOCK_ROWS = 64  # rows per GEMM work item; its int8 rows stay in L2 while tiles stream by
HALF = 8  # output columns per int32 register on AVX2 (two NEON registers)
# groups ahead whose weights (and scales) the AVX2 GEMV asks for into L2 (llvm.prefetch locality
# 2): a thread's tiles are contiguous, but each decode GEMV is over in 5-200 us, and the hardware
# prefetcher had not caught up with its stream. 6-12 groups ahead: 1.07-1.09x from memory over
# SmolLM2's and Qwen2-0.5B's shapes, 0.97x with the weights in cache (EPYC Zen 3); 32: 0.96x
GEMV_PREFETCH = 8
TILE_BYTES = GROUP * LANES // 2  # packed bytes of one column tile and group: 256
STEP_BYTES = TILE_BYTES // 4  # one step j of a tile and group: 16 columns x 4 k

# ISA -> output columns one kernel part covers (a column tile is LANES // that many parts), in
# order of preference on x86.
PART_COLUMNS = {"avx512-vnni": 16, "avx-vnni": 8, "avx2": 8, "neon-dot": 8, "neon-i8mm": 8}
ISAS = tuple(PART_COLUMNS)
# GEMM rows per register tile: 512-bit vpdpbusd has the latency to hide and 32 registers to do
# it with (6 rows x 2 accumulators + 6 float sums); the others have 16 registers. Not 8: the
# accumulators would fill 1 KiB, and TVM moves a buffer of 1 KiB or more off the stack into a
# workspace, where LLVM stores every accumulator back after each vpdpbusd (2.6x slower).
GEMM_ROWS = {"avx512-vnni": 6}
X86_FEATURES = {
    "avx512-vnni": ("avx512vnni", "avx512bw"),
    "avx-vnni": ("avxvnni",),
    "avx2": ("avx2",),
}


def x86_isas(target) -> list[str]:
    """Every x86 integer dot-product ISA the target has, best first."""
    from tvm.target import codegen

    return [
        isa
        for isa, features in X86_FEATURES.items()
        if all(codegen.target_has_features(f, target) for f in features)
    ]


def isa_for(target) -> str | None:
    """The integer dot-product kernels a target can run, or None (the float kernels then)."""
    from tvm.target import codegen

    if target.kind.name != "llvm":
        return None
    triple = str(target.attrs.get("mtriple", "") or "")
    if triple.startswith("aarch64"):
        if not codegen.target_has_features("dotprod", target):
            return None
        # i8mm's GEMV is sdot's (kernels.matmul_i8mm), so it needs dotprod too (every i8mm core
        # has it: Armv8.6-A)
        return "neon-i8mm" if codegen.target_has_features("i8mm", target) else "neon-dot"
    found = x86_isas(target)
    return found[0] if found else None


# Lanes of the vectors a group is quantized in: AVX2's float32 width (NEON takes each in two).
QUANT_LANES = 8


def _quantize_group(T, value):
    """Macro: group g of row ``row`` -> int8 xq, scale xd and zero-point term xz = 7 * sum(xq);
    ``value(src, row, g, i)`` is the group's i-th input value; ``amax`` and ``total`` are
    QUANT_LANES-long scratch. Serial between the decode GEMVs, so written for whole vectors:
    max |x| and sum(xq) lane by lane over the group's QUANT_LANES-wide pieces (vector code), then
    across the lanes of one (a balanced tree over all 32 values came out of LLVM as a tangle of
    shuffles, about 120 instructions a group)."""
    pieces = GROUP // QUANT_LANES

    def add(a, b):
        return a + b

    @T.macro
    def quantize(src, xq, xd, xz, row, g, amax, total):
        for ln in T.vectorized(QUANT_LANES):
            amax[ln] = tree(
                T.max, [T.fabs(value(src, row, g, j * QUANT_LANES + ln)) for j in range(pieces)]
            )
        amax[0] = tree(T.max, [amax[ln] for ln in range(QUANT_LANES)])
        for i in T.vectorized(GROUP):
            xq[row, g * GROUP + i] = T.Cast(
                "int8",
                T.round(
                    value(src, row, g, i)
                    * T.if_then_else(amax[0] > T.float32(0), T.float32(127) / amax[0], T.float32(0))
                ),
            )
        for ln in T.vectorized(QUANT_LANES):
            total[ln] = tree(
                add,
                [T.Cast("int32", xq[row, g * GROUP + j * QUANT_LANES + ln]) for j in range(pieces)],
            )
        total[0] = tree(add, [total[ln] for ln in range(QUANT_LANES)])
        xd[row, g] = amax[0] / T.float32(127)
        xz[row, g] = total[0] * ZERO

    return quantize


def _quantize_rows(T, k: int):
    """Macro: one row of X -> int8 xq, scale xd and zero-point term xz, group by group."""
    group = _quantize_group(T, lambda X, row, g, i: X[row, g * GROUP + i])

    @T.macro
    def quantize(X, xq, xd, xz, row, amax, total):
        for g in T.serial(k // GROUP):
            group(X, xq, xd, xz, row, g, amax, total)

    return quantize


def _fused_input(T, k: int, source: str | None):
    """Macro: one group of the decode GEMV's input row computed into xv (fp32) from what the
    layer before would have written: RMSNorm of X ("rms_norm": ``inv`` holds 1 / rms(X[row]),
    ``nw`` the norm's weight) or SwiGLU of X = [gate | up] ("swiglu"), as ``elementwise``'s
    kernels compute them; without a source, X itself converted to fp32 (a half-float X: the
    quantizer's max tree over half floats converted each of them on its own, and the step was
    0.96-0.98x as fast as with the group converted here by vector code)."""

    @T.macro
    def values(X, nw, inv, xv, row, g):
        for i in T.vectorized(GROUP):
            if source == "rms_norm":
                xv[i] = X[row, g * GROUP + i] * inv[0] * nw[g * GROUP + i]
            elif source == "swiglu":
                xv[i] = silu_times(T, X[row, g * GROUP + i], X[row, k + g * GROUP + i])
            else:
                xv[i] = T.Cast("float32", X[row, g * GROUP + i])

    return values


def _bcast4(T, xq, row, col, width: int = 32):
    """The 4 activation bytes xq[row, col : col + 4] repeated across ``width`` bytes."""
    return T.reinterpret(
        f"int8x{width}",
        T.broadcast(T.reinterpret("int32", xq.vload([row, col], "int8x4")), width // 4),
    )


def _bcast4_16(T, xq, row, col):
    return T.reinterpret(
        "int8x16", T.broadcast(T.reinterpret("int32", xq.vload([row, col], "int8x4")), 4)
    )


def _prefetch_group(T):
    """Macro: ask for group g's 256 weight bytes of column tile t (4 lines) into L2 and, every
    other group, for the line holding its scales (32 bytes a group). Addresses past the last
    tile are harmless: a prefetch never faults."""
    ask = prefetch_macro(T)

    @T.macro
    def ask_group(wq, sc, t, g):
        for line in T.unroll(4):
            ask(T.address_of(wq[t, g, line * 64]))
        if g % 2 == 0:
            ask(T.address_of(sc[t, g, 0]))

    return ask_group


def _store_output(T, residual: bool, dtype: str = "float32"):
    """Macro, every ISA's last step: Y[row, cols] = a register tile's sums + the bias, and with
    ``residual`` + R[row, cols] (the decode GEMV's residual connection; R is unused without),
    rounded to Y's ``dtype`` (the decode GEMV of the QKV projection writes the KV cache's)."""

    def rounded(value, lanes):
        return value if dtype == "float32" else T.Cast(f"{dtype}x{lanes}", value)

    @T.macro
    def store(Y, R, b_, sums, row, cols):
        if residual:
            Y[row, cols] = rounded(sums + b_[cols] + R[row, cols], cols.lanes)
        else:
            Y[row, cols] = rounded(sums + b_[cols], cols.lanes)

    return store


def _tile_avx2(
    T,
    k: int,
    rows: int,
    halves: int,
    unpacked: bool = False,
    prefetch: int = 0,
    residual: bool = False,
    out_dtype: str = "float32",
):
    """Macro: Y[row0 : row0 + rows, halves x 8 columns from half h0 of tile t] on AVX2.

    ``rows`` x ``halves`` is the register tile (both static): the GEMM takes 4 rows of one half
    (16 accumulator registers), the GEMV one row of both halves, so that it streams each tile's
    256 bytes per group front to back. With ``unpacked`` (the GEMM: one half), ``wq`` is the
    work item's own copy of its half with the nibbles already split (``_unpack_half``). With
    ``prefetch`` (the GEMV), each group first asks for the weights that many groups ahead: past
    the tile's end, those are the next tile's, which the thread goes on to. With ``residual``,
    Y also gets R (same shape) added: the decode GEMV's residual connection."""
    groups = k // GROUP
    ask = _prefetch_group(T)
    store = _store_output(T, residual, out_dtype)

    @T.macro
    def tile(xq, xd, xz, wq, sc, b_, Y, t, h0, row0, acc16, facc, wbuf, swv, R=None):
        for r in T.unroll(rows * halves):
            facc[T.ramp(r * HALF, 1, HALF)] = T.broadcast(T.float32(0), HALF)
        for g in T.serial(groups):
            if prefetch > 0:
                ask(wq, sc, t, g + prefetch)
            for r in T.unroll(rows * halves):
                acc16[T.ramp(r * 16, 1, 16)] = T.broadcast(T.int16(0), 16)
            for j in T.unroll(4):
                for hh in T.unroll(halves):
                    if unpacked:
                        wbuf[T.ramp(hh * 64, 1, 64)] = wq.vload([g, j * 64], "uint8x64")
                    else:
                        wbuf[T.ramp(hh * 64, 1, 32)] = wq.vload(
                            [t, g, j * 64 + (h0 + hh) * 32], "uint8x32"
                        )
                        wbuf[T.ramp(hh * 64 + 32, 1, 32)] = T.shift_right(
                            wbuf[T.ramp(hh * 64, 1, 32)], T.broadcast(T.uint8(4), 32)
                        )
                        wbuf[T.ramp(hh * 64, 1, 32)] = wbuf[T.ramp(hh * 64, 1, 32)] & T.broadcast(
                            T.uint8(15), 32
                        )
                    for r in T.unroll(rows):
                        acc16[T.ramp((r * halves + hh) * 16, 1, 16)] = (
                            acc16[T.ramp((r * halves + hh) * 16, 1, 16)]
                            + T.call_llvm_pure_intrin(
                                "int16x16",
                                "llvm.x86.avx2.pmadd.ub.sw",
                                wbuf[T.ramp(hh * 64, 1, 32)],
                                _bcast4(T, xq, row0 + r, g * GROUP + j * 4),
                            )
                            + T.call_llvm_pure_intrin(
                                "int16x16",
                                "llvm.x86.avx2.pmadd.ub.sw",
                                wbuf[T.ramp(hh * 64 + 32, 1, 32)],
                                _bcast4(T, xq, row0 + r, g * GROUP + j * 4 + 16),
                            )
                        )
            for hh in T.unroll(halves):
                swv[T.ramp(hh * HALF, 1, HALF)] = T.Cast(
                    "float32x8", sc[t, g, T.ramp((h0 + hh) * HALF, 1, HALF)]
                )
                for r in T.unroll(rows):
                    facc[T.ramp((r * halves + hh) * HALF, 1, HALF)] = facc[
                        T.ramp((r * halves + hh) * HALF, 1, HALF)
                    ] + T.Cast(
                        "float32x8",
                        T.call_llvm_pure_intrin(
                            "int32x8",
                            "llvm.x86.avx2.pmadd.wd",
                            acc16[T.ramp((r * halves + hh) * 16, 1, 16)],
                            T.broadcast(T.int16(1), 16),
                        )
                        - T.broadcast(xz[row0 + r, g], HALF),
                    ) * (swv[T.ramp(hh * HALF, 1, HALF)] * T.broadcast(xd[row0 + r, g], HALF))
        for r in T.unroll(rows):
            for hh in T.unroll(halves):
                store(
                    Y,
                    R,
                    b_,
                    facc[T.ramp((r * halves + hh) * HALF, 1, HALF)],
                    row0 + r,
                    T.ramp(t * LANES + (h0 + hh) * HALF, 1, HALF),
                )

    return tile


def _unpack_half(T, k: int):
    """Macro: one half (8 columns) of column tile t, every group, with its nibbles split into
    bytes: wu[g, j * 64 : + 32] the low nibbles of step j, [+ 32 : + 64] the high ones.

    An AVX2 GEMM work item does this once for its BLOCK_ROWS rows. Its register tiles then load
    the operands of ``vpmaddubsw`` ready-made: splitting them there (a shift and two masks per
    32 bytes, for 4 rows) took a fifth of the loop's vector instructions, and the vector pipes,
    not the loads, are what bounds it (1.15x on SmolLM2's and Qwen2-0.5B's GEMMs, EPYC Zen 3)."""
    groups = k // GROUP

    @T.macro
    def unpack(wq, wu, t, h):
        for g in T.serial(groups):
            for j in T.unroll(4):
                wu[g, T.ramp(j * 64, 1, 32)] = wq.vload(
                    [t, g, j * 64 + h * 32], "uint8x32"
                ) & T.broadcast(T.uint8(15), 32)
                wu[g, T.ramp(j * 64 + 32, 1, 32)] = T.shift_right(
                    wq.vload([t, g, j * 64 + h * 32], "uint8x32"), T.broadcast(T.uint8(4), 32)
                ) & T.broadcast(T.uint8(15), 32)

    return unpack


def _tile_neon(
    T, k: int, rows: int, halves: int, residual: bool = False, out_dtype: str = "float32"
):
    """Macro: the same register tile on ARM with ``sdot``: each half is two int32x4 quarters."""
    groups = k // GROUP
    quarters = 2 * halves
    store = _store_output(T, residual, out_dtype)

    @T.macro
    def tile(xq, xd, xz, wq, sc, b_, Y, t, h0, row0, acc32, facc, wbuf, swv, R=None):
        for r in T.unroll(rows * halves):
            facc[T.ramp(r * HALF, 1, HALF)] = T.broadcast(T.float32(0), HALF)
        for g in T.serial(groups):
            for r in T.unroll(rows * quarters):
                acc32[T.ramp(r * 4, 1, 4)] = T.broadcast(T.int32(0), 4)
            for j in T.unroll(4):
                for qtr in T.unroll(quarters):
                    wbuf[T.ramp(qtr * 32, 1, 16)] = wq.vload(
                        [t, g, j * 64 + h0 * 32 + qtr * 16], "uint8x16"
                    ) & T.broadcast(T.uint8(15), 16)
                    wbuf[T.ramp(qtr * 32 + 16, 1, 16)] = T.shift_right(
                        wq.vload([t, g, j * 64 + h0 * 32 + qtr * 16], "uint8x16"),
                        T.broadcast(T.uint8(4), 16),
                    )
                for r in T.unroll(rows):
                    for qtr in T.unroll(quarters):
                        acc32[T.ramp((r * quarters + qtr) * 4, 1, 4)] = T.call_llvm_pure_intrin(
                            "int32x4",
                            "llvm.aarch64.neon.sdot.v4i32.v16i8",
                            T.call_llvm_pure_intrin(
                                "int32x4",
                                "llvm.aarch64.neon.sdot.v4i32.v16i8",
                                acc32[T.ramp((r * quarters + qtr) * 4, 1, 4)],
                                T.reinterpret("int8x16", wbuf[T.ramp(qtr * 32, 1, 16)]),
                                _bcast4_16(T, xq, row0 + r, g * GROUP + j * 4),
                            ),
                            T.reinterpret("int8x16", wbuf[T.ramp(qtr * 32 + 16, 1, 16)]),
                            _bcast4_16(T, xq, row0 + r, g * GROUP + j * 4 + 16),
                        )
            for qtr in T.unroll(quarters):
                swv[T.ramp(qtr * 4, 1, 4)] = T.Cast(
                    "float32x4", sc[t, g, T.ramp(h0 * HALF + qtr * 4, 1, 4)]
                )
                for r in T.unroll(rows):
                    facc[T.ramp(r * halves * HALF + qtr * 4, 1, 4)] = facc[
                        T.ramp(r * halves * HALF + qtr * 4, 1, 4)
                    ] + T.Cast(
                        "float32x4",
                        acc32[T.ramp((r * quarters + qtr) * 4, 1, 4)]
                        - T.broadcast(xz[row0 + r, g], 4),
                    ) * (swv[T.ramp(qtr * 4, 1, 4)] * T.broadcast(xd[row0 + r, g], 4))
        for r in T.unroll(rows):
            store(
                Y,
                R,
                b_,
                facc[T.ramp(r * halves * HALF, 1, halves * HALF)],
                row0 + r,
                T.ramp(t * LANES + h0 * HALF, 1, halves * HALF),
            )

    return tile


def _tile_vnni(
    T,
    k: int,
    rows: int,
    parts: int,
    columns: int,
    residual: bool = False,
    out_dtype: str = "float32",
):
    """Macro: Y[row0 : row0 + rows, parts x ``columns`` columns from part p0 of tile t] with
    ``vpdpbusd`` (512-bit for 16 columns, 256-bit for 8). Low and high nibbles feed separate
    accumulators, which doubles the independent dependency chains the core can overlap."""
    groups = k // GROUP
    width = columns * 4  # weight bytes per register: columns x 4 consecutive k
    dot = f"llvm.x86.avx512.vpdpbusd.{columns * 32}"
    i32, f32, u8 = f"int32x{columns}", f"float32x{columns}", f"uint8x{width}"
    store = _store_output(T, residual, out_dtype)

    @T.macro
    def tile(xq, xd, xz, wq, sc, b_, Y, t, p0, row0, acc32, facc, wbuf, swv, R=None):
        for r in T.unroll(rows * parts):
            facc[T.ramp(r * columns, 1, columns)] = T.broadcast(T.float32(0), columns)
        for g in T.serial(groups):
            for r in T.unroll(rows):
                for pp in T.unroll(parts):
                    # -7 * sum(xq) seeds the low chain: the zero point, removed for free.
                    acc32[T.ramp((2 * (r * parts + pp)) * columns, 1, columns)] = T.broadcast(
                        -xz[row0 + r, g], columns
                    )
                    acc32[T.ramp((2 * (r * parts + pp) + 1) * columns, 1, columns)] = T.broadcast(
                        T.int32(0), columns
                    )
            for j in T.unroll(4):
                for pp in T.unroll(parts):
                    wbuf[T.ramp(pp * 2 * width, 1, width)] = wq.vload(
                        [t, g, j * STEP_BYTES + (p0 + pp) * width], u8
                    )
                    wbuf[T.ramp(pp * 2 * width + width, 1, width)] = T.shift_right(
                        wbuf[T.ramp(pp * 2 * width, 1, width)], T.broadcast(T.uint8(4), width)
                    )
                    wbuf[T.ramp(pp * 2 * width, 1, width)] = wbuf[
                        T.ramp(pp * 2 * width, 1, width)
                    ] & T.broadcast(T.uint8(15), width)
                    for r in T.unroll(rows):
                        # (no Python temporaries here: in a model library TVM keeps them in
                        # memory, and the accumulators with them)
                        acc32[T.ramp(2 * (r * parts + pp) * columns, 1, columns)] = (
                            T.call_llvm_pure_intrin(
                                i32,
                                dot,
                                acc32[T.ramp(2 * (r * parts + pp) * columns, 1, columns)],
                                T.reinterpret(
                                    f"int8x{width}", wbuf[T.ramp(pp * 2 * width, 1, width)]
                                ),
                                _bcast4(T, xq, row0 + r, g * GROUP + j * 4, width),
                            )
                        )
                        acc32[T.ramp((2 * (r * parts + pp) + 1) * columns, 1, columns)] = (
                            T.call_llvm_pure_intrin(
                                i32,
                                dot,
                                acc32[T.ramp((2 * (r * parts + pp) + 1) * columns, 1, columns)],
                                T.reinterpret(
                                    f"int8x{width}", wbuf[T.ramp(pp * 2 * width + width, 1, width)]
                                ),
                                _bcast4(T, xq, row0 + r, g * GROUP + j * 4 + 16, width),
                            )
                        )
            for pp in T.unroll(parts):
                swv[T.ramp(pp * columns, 1, columns)] = T.Cast(
                    f32, sc[t, g, T.ramp((p0 + pp) * columns, 1, columns)]
                )
                for r in T.unroll(rows):
                    facc[T.ramp((r * parts + pp) * columns, 1, columns)] = facc[
                        T.ramp((r * parts + pp) * columns, 1, columns)
                    ] + T.Cast(
                        f32,
                        acc32[T.ramp(2 * (r * parts + pp) * columns, 1, columns)]
                        + acc32[T.ramp((2 * (r * parts + pp) + 1) * columns, 1, columns)],
                    ) * (
                        swv[T.ramp(pp * columns, 1, columns)]
                        * T.broadcast(xd[row0 + r, g], columns)
                    )
        for r in T.unroll(rows):
            for pp in T.unroll(parts):
                store(
                    Y,
                    R,
                    b_,
                    facc[T.ramp((r * parts + pp) * columns, 1, columns)],
                    row0 + r,
                    T.ramp(t * LANES + (p0 + pp) * columns, 1, columns),
                )

    return tile


def _tile(
    T,
    isa: str,
    k: int,
    rows: int,
    parts: int,
    unpacked: bool = False,
    prefetch: int = 0,
    residual: bool = False,
    out_dtype: str = "float32",
):
    """The register-tile macro of ``isa`` for ``rows`` rows x ``parts`` parts of a column tile
    (``unpacked``: AVX2's, on weights ``_unpack_half`` prepared; ``prefetch``: AVX2's, groups
    ahead, the only ISA it was measured on; ``residual``: the output also adds R; ``out_dtype``:
    Y's)."""
    if isa not in ISAS:
        raise ValueError(f"unknown integer dot-product ISA {isa!r}; one of {ISAS}")
    if isa in ("avx512-vnni", "avx-vnni"):
        return _tile_vnni(T, k, rows, parts, PART_COLUMNS[isa], residual, out_dtype)
    if isa == "avx2":
        return _tile_avx2(T, k, rows, parts, unpacked, prefetch, residual, out_dtype)
    return _tile_neon(T, k, rows, parts, residual, out_dtype)


def _acc_shape(isa: str, slots: int) -> tuple[tuple[int], str]:
    """Integer accumulators of ``slots`` (row, part) pairs: one int16x16 each on AVX2, two
    int32x4 on NEON, two int32 registers (low and high nibbles) with VNNI."""
    if isa == "avx2":
        return (slots * 16,), "int16"
    if isa == "neon-dot":
        return (slots * 8,), "int32"
    return (slots * 2 * PART_COLUMNS[isa],), "int32"


@cache
def q4_matmul_a8(n: int, k: int, scale_dtype: str, rows: str, isa: str):
    """y[M, N] = x[M, K] @ dequant(Wq, S).T + b with x quantized to int8 on the fly; ``rows`` is
    "one" (decode GEMV) or "many" (GEMM). Weights in the ``pack_q4_a8`` layout."""
    from tvm.script import tirx as T

    check_shape(n, k, True)
    if isa == "neon-i8mm":
        from . import matmul_i8mm

        if rows == "many":
            return matmul_i8mm.gemm(n, k, scale_dtype, TILE_BYTES, BLOCK_ROWS)
        isa = "neon-dot"  # one row: sdot (kernels.matmul_i8mm says why)
    tiles, groups = n // LANES, k // GROUP
    columns = PART_COLUMNS[isa]
    parts = LANES // columns  # work items per column tile in the GEMM
    tile_rows = GEMM_ROWS.get(isa, ROWS)
    quantize = _quantize_rows(T, k)
    unpacked = isa == "avx2"  # GEMM items split their weights' nibbles once (_unpack_half)
    unpack = _unpack_half(T, k)
    one = _tile(T, isa, k, 1, 1, unpacked)  # GEMM rows left over after the register tiles
    many = _tile(T, isa, k, tile_rows, 1, unpacked)
    gemv_tiles = _gemv_tiles(T, isa, k, tiles)
    acc_many = _acc_shape(isa, tile_rows)
    wbuf_part = 8 * columns  # low and high nibbles of one part's step: 2 x columns x 4 bytes

    if rows == "one":

        @T.prim_func(private=True, s_tir=True)
        def gemv(
            x: T.handle,
            wq: T.Buffer((tiles, groups, TILE_BYTES), "uint8"),
            sc: T.Buffer((tiles, groups, LANES), scale_dtype),
            b_: T.Buffer((n,), "float32"),
            y: T.handle,
        ):
            T.func_attr(CPU_ATTRS)
            m = T.int64()
            X = T.match_buffer(x, (m, k), "float32")
            Y = T.match_buffer(y, (m, n), "float32")
            xq = T.alloc_buffer((m, k), "int8")
            xd = T.alloc_buffer((m, groups), "float32")
            xz = T.alloc_buffer((m, groups), "int32")
            amax = T.alloc_buffer((QUANT_LANES,), "float32")
            total = T.alloc_buffer((QUANT_LANES,), "int32")
            # One row (decode): quantizing it serially costs less than waking the thread pool.
            for row in T.serial(m):
                quantize(X, xq, xd, xz, row, amax, total)
            gemv_tiles(xq, xd, xz, wq, sc, b_, Y, None, m)

        return gemv

    @T.macro
    def block(xq, xd, xz, w, sc, b_, Y, t, h, row0, count, acc, facc, wbuf, swv):
        """One work item's rows: register tiles of tile_rows, then the rows left over."""
        for mo in T.serial(count // tile_rows):
            many(xq, xd, xz, w, sc, b_, Y, t, h, row0 + mo * tile_rows, acc, facc, wbuf, swv)
        for mt in T.serial(count % tile_rows):
            one(
                xq,
                xd,
                xz,
                w,
                sc,
                b_,
                Y,
                t,
                h,
                row0 + count - count % tile_rows + mt,
                acc,
                facc,
                wbuf,
                swv,
            )

    @T.prim_func(private=True, s_tir=True)
    def gemm(
        x: T.handle,
        wq: T.Buffer((tiles, groups, TILE_BYTES), "uint8"),
        sc: T.Buffer((tiles, groups, LANES), scale_dtype),
        b_: T.Buffer((n,), "float32"),
        y: T.handle,
    ):
        T.func_attr(CPU_ATTRS)
        m = T.int64()
        X = T.match_buffer(x, (m, k), "float32")
        Y = T.match_buffer(y, (m, n), "float32")
        xq = T.alloc_buffer((m, k), "int8")
        xd = T.alloc_buffer((m, groups), "float32")
        xz = T.alloc_buffer((m, groups), "int32")
        for row in T.parallel(m):
            with T.sblock("quantize"):
                T.reads()
                T.writes()
                amax = T.sblock_alloc_buffer((QUANT_LANES,), "float32")
                total = T.sblock_alloc_buffer((QUANT_LANES,), "int32")
                quantize(X, xq, xd, xz, row, amax, total)
        # Work items: (block of BLOCK_ROWS rows) x (column tile) x (part), tiles inner, so the
        # threads' contiguous item ranges reuse one block of int8 rows from cache.
        for item in T.parallel(T.ceildiv(m, BLOCK_ROWS) * tiles * parts):
            with T.sblock("tile"):
                T.reads()
                T.writes()
                acc = T.sblock_alloc_buffer(acc_many[0], acc_many[1])
                facc = T.sblock_alloc_buffer((tile_rows * columns,), "float32")
                wbuf = T.sblock_alloc_buffer((wbuf_part,), "uint8")
                swv = T.sblock_alloc_buffer((columns,), "float32")
                t: T.let[T.int64] = item // parts % tiles
                h: T.let[T.int64] = item % parts
                row0: T.let[T.int64] = item // (tiles * parts) * BLOCK_ROWS
                count: T.let[T.int64] = T.min(T.int64(BLOCK_ROWS), m - row0)
                if unpacked:
                    wu = T.sblock_alloc_buffer((groups, TILE_BYTES), "uint8")
                    unpack(wq, wu, t, h)
                    block(xq, xd, xz, wu, sc, b_, Y, t, h, row0, count, acc, facc, wbuf, swv)
                else:
                    block(xq, xd, xz, wq, sc, b_, Y, t, h, row0, count, acc, facc, wbuf, swv)

    return gemm


def _gemv_tiles(T, isa: str, k: int, tiles: int, residual: bool = False, out_dtype="float32"):
    """Macro: the decode GEMV's products for rows 0..m of quantized X, a work item per column
    tile (one row, every part of the tile: the thread streams its tiles' bytes front to back,
    prefetching ahead). With ``residual``, Y also gets R added; Y is of ``out_dtype``."""
    parts = LANES // PART_COLUMNS[isa]
    whole = _tile(
        T, isa, k, 1, parts, prefetch=GEMV_PREFETCH, residual=residual, out_dtype=out_dtype
    )
    acc_shape = _acc_shape(isa, parts)
    wbuf_bytes = parts * 8 * PART_COLUMNS[isa]  # low and high nibbles of each part's step

    @T.macro
    def gemv_tiles(xq, xd, xz, wq, sc, b_, Y, R, m):
        for row in T.serial(m):
            for t in T.parallel(tiles):
                with T.sblock("tile"):
                    T.reads()
                    T.writes()
                    acc = T.sblock_alloc_buffer(acc_shape[0], acc_shape[1])
                    facc = T.sblock_alloc_buffer((LANES,), "float32")
                    wbuf = T.sblock_alloc_buffer((wbuf_bytes,), "uint8")
                    swv = T.sblock_alloc_buffer((LANES,), "float32")
                    whole(xq, xd, xz, wq, sc, b_, Y, t, 0, row, acc, facc, wbuf, swv, R)

    return gemv_tiles


# What a fused decode GEMV computes its input row from (q4_gemv_a8_fused), besides X itself.
SOURCES = ("rms_norm", "swiglu")


@cache
def q4_gemv_a8_fused(
    n: int,
    k: int,
    scale_dtype: str,
    isa: str,
    source: str | None = None,
    residual: bool = False,
    eps: float = 0.0,
    in_dtype: str = "float32",
    out_dtype: str = "float32",
):
    """The decode GEMV with the elementwise work around it folded in: its input row computed
    from the previous kernel's output (``source``: RMSNorm with ``eps`` or SwiGLU, on the calling
    thread as it quantizes the row), and the residual connection added as it writes Y. X of
    ``in_dtype`` (the KV cache's: the attention output into o_proj) and Y of ``out_dtype`` (the
    QKV projection's, which the cache takes) spare the casts around the attention.

    Each op folded in is a kernel call fewer, with the VM's allocation and release of its output:
    in a SmolLM2 decode step the gaps between the parallel kernels took a fifth of the time.
    Arguments: x [1, k] (SwiGLU: [1, 2k], gate then up), nw [k] the norm's weight ([1] and unused
    without a norm), the packed weights, scales and bias as in ``q4_matmul_a8``, r [1, n] the
    residual ([1] and unused without one), y [1, n]. Same results as the ops one by one."""
    from tvm.script import tirx as T

    check_shape(n, k, True)
    if source not in (None, *SOURCES):
        raise ValueError(f"unknown GEMV input {source!r}; one of {SOURCES}")
    if source is not None and in_dtype != "float32":
        raise ValueError(f"the GEMV computes {source} from float32 rows, not {in_dtype}")
    if isa == "neon-i8mm":
        isa = "neon-dot"  # one row: sdot (kernels.matmul_i8mm says why)
    tiles, groups = n // LANES, k // GROUP
    width = 2 * k if source == "swiglu" else k
    plain, norm = source is None, source == "rms_norm"
    nw_shape = (k,) if norm else (1,)
    gemv_tiles = _gemv_tiles(T, isa, k, tiles, residual, out_dtype)
    quantize_row = _quantize_rows(T, k)
    quantize_group = _quantize_group(T, lambda xv, row, g, i: xv[i])
    values = _fused_input(T, k, source)
    inverse = inverse_rms(T, k, eps)
    # One row, fixed: the row's buffers below then have sizes known when compiling, and TVM puts
    # those under 1 KiB on the stack instead of asking its workspace pool for each on every call
    # (eight allocations and releases a call, 960 a SmolLM2 decode step).
    m = 1

    @T.prim_func(private=True, s_tir=True)
    def gemv(
        x: T.handle,
        nw: T.Buffer(nw_shape, "float32"),
        wq: T.Buffer((tiles, groups, TILE_BYTES), "uint8"),
        sc: T.Buffer((tiles, groups, LANES), scale_dtype),
        b_: T.Buffer((n,), "float32"),
        r: T.handle,
        y: T.handle,
    ):
        T.func_attr(CPU_ATTRS)
        X = T.match_buffer(x, (m, width), in_dtype)
        Y = T.match_buffer(y, (m, n), out_dtype)
        if residual:
            R = T.match_buffer(r, (m, n), "float32")
        else:
            R = T.match_buffer(r, (1,), "float32")
        xq = T.alloc_buffer((m, k), "int8")
        xd = T.alloc_buffer((m, groups), "float32")
        xz = T.alloc_buffer((m, groups), "int32")
        amax = T.alloc_buffer((QUANT_LANES,), "float32")
        total = T.alloc_buffer((QUANT_LANES,), "int32")
        xv = T.alloc_buffer((GROUP,), "float32")
        part = T.alloc_buffer((NORM_LANES,), "float32")
        inv = T.alloc_buffer((1,), "float32")
        # One row (decode): computing and quantizing it serially costs less than waking the
        # thread pool.
        for row in T.serial(m):
            if plain and in_dtype == "float32":
                quantize_row(X, xq, xd, xz, row, amax, total)
            else:
                if norm:
                    inverse(X, part, inv, row)
                for g in T.serial(groups):
                    values(X, nw, inv, xv, row, g)
                    quantize_group(xv, xq, xd, xz, row, g, amax, total)
        gemv_tiles(xq, xd, xz, wq, sc, b_, Y, R, m)

    return gemv
