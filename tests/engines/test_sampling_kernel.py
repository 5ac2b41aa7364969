"""The library's greedy sampling kernel (kernels.sampling) against np.argmax."""

from __future__ import annotations

import numpy as np
import pytest


def build(func):
    import tvm

    from harness.engines.tvm.targets import resolve

    return tvm.tirx.build(
        tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=resolve("llvm")
    )["main"]


@pytest.mark.parametrize("vocab", [49152, 151936, 32003, 37])
@pytest.mark.parametrize("lanes", [8, 16])
def test_argmax_matches_numpy_first_index_on_ties(vocab, lanes):
    """Random logits, a repeated maximum placed in different work items and vector lanes, and
    rounded logits full of ties: the first index of the largest, as np.argmax says. A vocabulary
    that divides into neither the items nor the vector lanes covers the scalar tail."""
    import tvm

    from harness.engines.tvm.kernels.sampling import argmax

    fn = build(argmax(vocab, lanes))
    rng = np.random.default_rng(vocab + lanes)
    cases = []
    for _ in range(4):
        x = rng.standard_normal(vocab).astype(np.float32)
        cases.append(x)
        tied = x.copy()
        tied[rng.choice(vocab, size=min(3, vocab), replace=False)] = x.max() + 1
        cases.append(tied)
        cases.append(np.round(x))
    last = np.zeros(vocab, np.float32)
    last[-1] = 1  # the answer in the tail
    cases.append(last)
    for x in cases:
        token = tvm.runtime.tensor(np.full(1, -1, np.int32))
        fn(tvm.runtime.tensor(x.reshape(1, 1, vocab)), token)
        assert token.numpy()[0] == np.argmax(x)
