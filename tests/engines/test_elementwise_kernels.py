"""The CPU RMSNorm and SwiGLU kernels (kernels.elementwise) against numpy."""

from __future__ import annotations

import numpy as np
import pytest


def build(func):
    import tvm

    from harness.engines.tvm.targets import resolve

    return tvm.tirx.build(
        tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=resolve("llvm")
    )["main"]


def tensors(*arrays):
    import tvm

    return [tvm.runtime.tensor(a, tvm.cpu()) for a in arrays]


@pytest.mark.parametrize("rows,one_row", [(1, True), (5, False)])
def test_rms_norm_matches_numpy(rows, one_row):
    from harness.engines.tvm.kernels.elementwise import rms_norm

    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 64)).astype(np.float32) * 3
    w = rng.standard_normal(64).astype(np.float32)
    args = tensors(x, w, np.zeros_like(x))
    build(rms_norm(64, 1e-5, one_row))(*args)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(args[-1].numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,one_row", [(1, True), (3, False)])
def test_swiglu_matches_numpy_over_the_whole_range(rows, one_row):
    """silu through the polynomial exp2: relative error < 1e-4, and no inf/nan where e^-x
    overflows (x = -100) or vanishes (x = +100)."""
    from harness.engines.tvm.kernels.elementwise import swiglu

    rng = np.random.default_rng(rows)
    h = (rng.standard_normal((rows, 2 * 32)) * 4).astype(np.float32)
    h[0, :4] = [-100, -20, 20, 100]
    args = tensors(h, np.zeros((rows, 32), np.float32))
    build(swiglu(32, one_row))(*args)
    gate, up = h[:, :32].astype(np.float64), h[:, 32:]
    ref = gate / (1 + np.exp(-gate)) * up
    out = args[-1].numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
