"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def cpu_targets() -> dict:
    """One CPU target per register file the kernels size themselves by: AVX2 (16 registers of
    8 floats), AVX-512 (32 of 16) and NEON (32 of 4). None of them needs to be this machine."""
    import tvm

    from harness.engines.tvm.targets import resolve

    return {
        "avx2": resolve("llvm-avx2"),
        "avx512": tvm.target.Target({"kind": "llvm", "mcpu": "znver4"}),
        "neon": tvm.target.Target(
            {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
        ),
    }
