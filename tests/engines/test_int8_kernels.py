"""The integer dot-product matmuls (kernels.matmul_int8) against a numpy model of their math.

The numpy side quantizes activations exactly as the kernels do (per row and group of 32,
scale max|x| / 127, round to nearest), so the comparison is tight: any layout, nibble or
zero-point slip changes results by whole quantization steps, far beyond the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.quantization import GROUP, get_preset, pack_q4_a8, quantize_q4


def host_target():
    from harness.engines.tvm.targets import resolve

    return resolve("llvm")


def numpy_a8_matmul(
    x: np.ndarray, q: np.ndarray, scale: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    m, k = x.shape
    groups = x.reshape(m, k // GROUP, GROUP).astype(np.float64)
    amax = np.abs(groups).max(axis=2, keepdims=True)
    xq = np.rint(groups * np.where(amax > 0, 127 / np.where(amax > 0, amax, 1), 0))
    xd = amax[..., 0] / 127
    wq = q.reshape(q.shape[0], k // GROUP, GROUP).astype(np.float64)
    dots = np.einsum("mgk,ngk->mng", xq, wq) - 7 * xq.sum(axis=2)[:, None, :]
    return (dots * xd[:, None, :] * scale.astype(np.float64)[None, :, :]).sum(axis=2) + bias


def run_kernel(func, x, packed, bias, n):
    import tvm

    lib = tvm.tirx.build(
        tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=host_target()
    )
    dev = tvm.cpu()
    args = [
        tvm.runtime.tensor(a, dev)
        for a in (x, *packed, bias, np.zeros((x.shape[0], n), np.float32))
    ]
    lib["main"](*args)
    return args[-1].numpy()


@pytest.fixture(scope="module")
def isa():
    from harness.engines.tvm.kernels.matmul_int8 import isa_for

    found = isa_for(host_target())
    if found is None:
        pytest.skip("this CPU has neither AVX2 nor ARM dotprod: the int8 kernels cannot run here")
    return found


def host_isas() -> list[str]:
    """Every integer dot-product ISA this host can execute (x86: VNNI and AVX2 alike)."""
    from harness.engines.tvm.kernels.matmul_int8 import isa_for, x86_isas

    target = host_target()
    best = isa_for(target)
    return [] if best is None else ([best] if best == "neon-dot" else x86_isas(target))


def test_isa_choice_follows_the_target_features():
    """Compile-time choice: the best x86 ISA the target names, neon-dot for ARM with dotprod."""
    import tvm

    from harness.engines.tvm.kernels.matmul_int8 import isa_for

    def x86(mcpu):
        return isa_for(tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))

    assert (x86("znver4"), x86("alderlake"), x86("haswell"), x86("x86-64")) == (
        "avx512-vnni",
        "avx-vnni",
        "avx2",
        None,
    )
    arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    assert isa_for(arm) is None


def test_llvm_avx2_holds_the_host_to_the_avx2_kernels(monkeypatch):
    """llvm-avx2 compiles the AVX2 kernels whatever the host has, and a host that cannot run
    them is told so in one line."""
    import platform

    from harness.engines.tvm import targets
    from harness.engines.tvm.kernels.matmul_int8 import isa_for
    from harness.errors import UserError

    if platform.machine() != "x86_64":
        with pytest.raises(UserError, match="is x86 code"):
            targets.resolve("llvm-avx2")
        return
    assert isa_for(targets.resolve("llvm-avx2")) == "avx2"
    assert targets.is_host_runnable("llvm-avx2")
    monkeypatch.setattr(targets, "_cpu_flags", lambda: {"sse2", "avx", "fma"})
    with pytest.raises(UserError, match=r"needs avx2, f16c, which this CPU lacks; use --target"):
        targets.resolve("llvm-avx2")


def test_arm64_linux_i8mm_picks_smmla_and_the_plain_build_keeps_sdot():
    from harness.engines.tvm.kernels.matmul_int8 import isa_for
    from harness.engines.tvm.targets import CROSS_COMPILERS, KERNEL_DESCRIPTIONS, resolve

    assert isa_for(resolve("arm64-linux-i8mm")) == "neon-i8mm"
    assert isa_for(resolve("arm64-linux")) == "neon-dot"
    assert "smmla" in KERNEL_DESCRIPTIONS["neon-i8mm"]
    assert CROSS_COMPILERS["arm64-linux-i8mm"] == CROSS_COMPILERS["arm64-linux"]


@pytest.mark.parametrize(
    "n,k,m", [(32, 64, 1), (48, 96, 1), (32, 64, 7), (48, 160, 70), (32, 64, 13)]
)
def test_int8_matmul_matches_numpy(isa, n, k, m):
    """GEMV (m = 1) and GEMM on every ISA the host runs, with row counts that leave tails of the
    4- and 8-row tiles and of the 64-row block."""
    from harness.engines.tvm.kernels.matmul_int8 import q4_matmul_a8

    rng = np.random.default_rng(n + k + m)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 10, (m, 1))).astype(np.float32)
    x[0, :GROUP] = 0  # an all-zero group: scale 0, no division by zero
    bias = rng.standard_normal(n).astype(np.float32)
    q, s = quantize_q4(w, "float16")
    ref = numpy_a8_matmul(x, q, s, bias)
    for each in host_isas():
        ours = run_kernel(
            q4_matmul_a8(n, k, "float16", "one" if m == 1 else "many", each),
            x,
            pack_q4_a8(q, s),
            bias,
            n,
        )
        assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max(), each


@pytest.mark.parametrize(
    "source,residual,in_dtype,out_dtype",
    [
        (None, True, "float16", "float32"),  # o_proj: the cache's fp16 output in
        ("rms_norm", False, "float32", "float16"),  # QKV: fp16 for the cache out
        ("rms_norm", True, "float32", "float32"),
        ("swiglu", True, "float32", "float32"),  # down_proj
    ],
)
def test_a_decode_gemv_with_its_neighbours_folded_in_gives_their_very_bits(
    isa, source, residual, in_dtype, out_dtype
):
    """RMSNorm or SwiGLU computed into the GEMV's input, the residual added to its output, the
    casts on either side (q4_gemv_a8_fused) give the bits of the kernels one by one: norm or
    SwiGLU, the plain GEMV, an add, a cast."""
    import tvm

    from harness.engines.tvm.kernels import elementwise
    from harness.engines.tvm.kernels.matmul_int8 import q4_gemv_a8_fused, q4_matmul_a8

    n, k = 48, 96
    rng = np.random.default_rng(7)
    q, s = quantize_q4(rng.standard_normal((n, k)).astype(np.float32), "float16")
    wq, sc = pack_q4_a8(q, s)
    bias = rng.standard_normal(n).astype(np.float32)
    x = (rng.standard_normal((1, 2 * k if source == "swiglu" else k)) * 3).astype(in_dtype)
    nw = rng.standard_normal(k if source == "rms_norm" else 1).astype(np.float32)
    r = rng.standard_normal((1, n) if residual else 1).astype(np.float32)

    def run(func, *arrays, out_shape, out_dtype="float32"):
        lib = tvm.tirx.build(
            tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=host_target()
        )
        args = [tvm.runtime.tensor(a) for a in (*arrays, np.zeros(out_shape, out_dtype))]
        lib["main"](*args)
        return args[-1].numpy()

    for each in host_isas():
        fused = run(
            q4_gemv_a8_fused(n, k, "float16", each, source, residual, 1e-5, in_dtype, out_dtype),
            *(x, nw, wq, sc, bias, r),
            out_shape=(1, n),
            out_dtype=out_dtype,
        )
        if source == "rms_norm":
            x_in = run(elementwise.rms_norm(k, 1e-5, True), x, nw, out_shape=(1, k))
        elif source == "swiglu":
            x_in = run(elementwise.swiglu(k, True), x, out_shape=(1, k))
        else:
            x_in = x.astype(np.float32)  # fp16 -> fp32 is exact
        plain = run(
            q4_matmul_a8(n, k, "float16", "one", each), x_in, wq, sc, bias, out_shape=(1, n)
        )
        expected = (plain + r if residual else plain).astype(out_dtype)
        np.testing.assert_array_equal(fused, expected, err_msg=each)


def test_neon_kernels_compile_to_sdot_for_arm64():
    """The ARM build of the same kernels (run under qemu in tests/devices/test_arm64_phone.py)."""
    import tvm

    from harness.engines.tvm.kernels.matmul_int8 import isa_for, q4_matmul_a8
    from harness.engines.tvm.targets import resolve

    target = resolve("arm64-linux")
    assert isa_for(target) == "neon-dot"
    func = q4_matmul_a8(32, 64, "float16", "many", "neon-dot").with_attr("global_symbol", "main")
    asm = tvm.tirx.build(tvm.IRModule({"main": func}), target=target).inspect_source("asm")
    assert "sdot" in asm


def test_i8mm_gemm_compiles_to_smmla_and_its_gemv_to_sdot():
    """The i8mm build (run under qemu in test_int8_kernels_arm64.py): smmla for many rows, sdot
    for one (kernels.matmul_i8mm says why)."""
    import tvm

    from harness.engines.tvm.kernels.matmul_int8 import q4_matmul_a8
    from harness.engines.tvm.targets import resolve

    target = resolve("arm64-linux-i8mm")

    def asm(rows):
        func = q4_matmul_a8(32, 64, "float16", rows, "neon-i8mm").with_attr("global_symbol", "f")
        return tvm.tirx.build(tvm.IRModule({"f": func}), target=target).inspect_source("asm")

    gemm, gemv = asm("many"), asm("one")
    assert "smmla" in gemm and "sdot" not in gemm
    assert "sdot" in gemv and "smmla" not in gemv


def test_a8_preset_packs_its_own_layout_and_says_what_it_needs():
    from harness.quantization import pack_linear

    preset = get_preset("q4f16_1a8")
    packed = pack_linear(np.ones((32, 64), np.float32), preset)
    assert packed["qweight"].shape == (2, 2, 256) and packed["qweight"].dtype == np.uint8
    assert preset.activations == "int8" and get_preset("q4f16_1").activations == "float32"


def test_a8_preset_falls_back_to_float_kernels_without_integer_dot_products():
    """A target without AVX2 (generic x86-64) compiles q4f16_1a8 as q4f16_1, and says so."""
    import tvm

    from harness.engines.tvm.compile import _preset_for

    generic = tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"})
    said = []
    twin = _preset_for(get_preset("q4f16_1a8"), generic, "llvm", said.append)
    assert twin.name == "q4f16_1" and "compiles as q4f16_1" in said[0]
    assert _preset_for(get_preset("q4f16_1a8"), host_target(), "llvm", said.append).name in (
        "q4f16_1a8",
        "q4f16_1",
    )
