"""Parallel, vectorized CPU kernels for the per-row ops between the matmuls.

TVM's default lowering of ``rms_norm`` and of the fused ``silu(gate) * up`` is a serial scalar
loop with a libm ``expf`` per element: at L = 200 on SmolLM2-135M they took 94 ms of a 580 ms
prefill (2 threads). These run rows in parallel, vectorize along the row, and evaluate the
sigmoid with the polynomial ``exp2`` of the attention kernels.
"""

from __future__ import annotations

import math
from functools import cache

from . import cpu_attrs
from .attention import fast_exp2

LANES = 8  # partial sums of the squares in RMSNorm (one AVX2 register, two NEON)
# Opaque (kOpaque = 8): relax must not fuse the reshapes around these kernels into them.
ATTRS = cpu_attrs(op_pattern=8)


def _row_loop(T, one_row: bool):
    """Rows in parallel; a single row (decode) runs on the calling thread, since waking the
    thread pool for one row costs more than the row."""
    return T.serial if one_row else T.parallel


def inverse_rms(T, size: int, eps: float):
    """Macro: scale[0] = 1 / sqrt(mean(X[r]^2) + eps), the squares summed in LANES partial sums
    (``part``), then those in order. The int8 decode GEMV that computes the norm itself
    (``matmul_int8.q4_gemv_a8_fused``) uses it too, so both give the same bits."""

    @T.macro
    def inverse(X, part, scale, r):
        for ln in T.vectorized(LANES):
            part[ln] = T.float32(0)
        for c in T.serial(size // LANES):
            for ln in T.vectorized(LANES):
                part[ln] = part[ln] + X[r, c * LANES + ln] * X[r, c * LANES + ln]
        scale[0] = T.float32(0)
        for ln in T.serial(LANES):
            scale[0] = scale[0] + part[ln]
        scale[0] = T.float32(1) / T.sqrt(scale[0] / T.float32(size) + T.float32(eps))

    return inverse


def silu_times(T, gate, up):
    """silu(gate) * up = gate / (1 + e^-gate) * up, e^-gate from the polynomial exp2 of up to
    +126 (gate down to -87: 1 + e^-gate saturates, silu -> -0). Shared with the int8 decode
    GEMV that computes SwiGLU itself."""
    return (
        gate
        / (
            T.float32(1)
            + fast_exp2(T, T.min(gate * T.float32(-1.0 / math.log(2.0)), T.float32(126)))
        )
        * up
    )


@cache
def rms_norm(size: int, eps: float, one_row: bool = False):
    """y[rows, size] = x / sqrt(mean(x^2) + eps) * weight."""
    from tvm.script import tirx as T

    row_loop = _row_loop(T, one_row)
    if size % LANES:
        raise ValueError(f"RMSNorm width {size} must be a multiple of {LANES}")
    inverse = inverse_rms(T, size, eps)

    @T.prim_func(private=True, s_tir=True)
    def rms_norm_cpu(x: T.handle, weight: T.Buffer((size,), "float32"), y: T.handle):
        T.func_attr(ATTRS)
        rows = T.int64()
        X = T.match_buffer(x, (rows, size), "float32")
        Y = T.match_buffer(y, (rows, size), "float32")
        for r in row_loop(rows):
            with T.sblock("row"):
                T.reads()
                T.writes()
                part = T.sblock_alloc_buffer((LANES,), "float32")
                scale = T.sblock_alloc_buffer((1,), "float32")
                inverse(X, part, scale, r)
                for c in T.serial(size // LANES):
                    for ln in T.vectorized(LANES):
                        Y[r, c * LANES + ln] = (
                            X[r, c * LANES + ln] * scale[0] * weight[c * LANES + ln]
                        )

    return rms_norm_cpu


@cache
def swiglu(inter: int, one_row: bool = False):
    """out[rows, inter] = silu(h[:, :inter]) * h[:, inter:], silu(x) = x / (1 + e^-x)."""
    from tvm.script import tirx as T

    row_loop = _row_loop(T, one_row)
    if inter % LANES:
        raise ValueError(f"MLP width {inter} must be a multiple of {LANES}")

    @T.prim_func(private=True, s_tir=True)
    def swiglu_cpu(h: T.handle, out: T.handle):
        T.func_attr(ATTRS)
        rows = T.int64()
        H = T.match_buffer(h, (rows, 2 * inter), "float32")
        Y = T.match_buffer(out, (rows, inter), "float32")
        for r in row_loop(rows):
            with T.sblock("row"):
                T.reads()
                T.writes()
                for c in T.serial(inter // LANES):
                    for ln in T.vectorized(LANES):
                        Y[r, c * LANES + ln] = silu_times(
                            T, H[r, c * LANES + ln], H[r, inter + c * LANES + ln]
                        )

    return swiglu_cpu
