"""The decode attention kernel against numpy: grouped heads, many pages, a partial last page,
fewer pages than cache splits, soft-capped scores and a sliding window that masks whole pages."""

from __future__ import annotations

import numpy as np
import pytest

PAGE = 16


def run_decode(
    h_kv: int,
    h_qo: int,
    d: int,
    length: int,
    seed: int = 0,
    window: int = 0,
    softcap: float = 0.0,
    budget: int | None = None,
):
    import tvm

    from harness.engines.tvm.kernels.attention import WINDOWED
    from harness.engines.tvm.kernels.decode_attention import GROUP_ACC, decode_paged
    from harness.engines.tvm.targets import resolve

    rng = np.random.default_rng(seed)
    npages = -(-length // PAGE)
    order = rng.permutation(npages + 3)[:npages].astype(np.int32)  # pages scattered in the pool
    pool = rng.standard_normal((npages + 3, 2, h_kv, PAGE, d)).astype(np.float16)
    pool[order[-1], :, :, length - (npages - 1) * PAGE :] = np.nan  # unwritten slots must not leak
    q = rng.standard_normal((1, h_qo, d)).astype(np.float16)
    f = decode_paged(
        h_kv, h_qo, d, "float16", window=window, softcap=softcap, budget=budget or GROUP_ACC
    ).with_attr("global_symbol", "main")
    lib = tvm.tirx.build(tvm.IRModule({"main": f}), target=resolve("llvm"))
    t = lambda a: tvm.runtime.tensor(a, tvm.cpu())  # noqa: E731
    out, lse = np.zeros((1, h_qo, d), np.float16), np.zeros((1, h_qo), np.float32)
    args = [
        t(q),
        t(pool),
        t(np.array([0, npages], np.int32)),
        t(order),
        t(np.array([length - (npages - 1) * PAGE], np.int32)),
        t(np.zeros(1, np.int32)),
        t(np.array([length - 1], np.int32)),
        t(out),
        t(lse),
    ]
    scale = d**-0.5
    lib["main"](*args, 0, 1.0, 10000.0, scale * (WINDOWED if window else 1.0))
    keys = pool[order, 0].transpose(1, 0, 2, 3).reshape(h_kv, -1, d)[:, :length].astype(np.float64)
    values = (
        pool[order, 1].transpose(1, 0, 2, 3).reshape(h_kv, -1, d)[:, :length].astype(np.float64)
    )
    group = h_qo // h_kv
    ref, ref_lse = np.zeros((h_qo, d)), np.zeros(h_qo)
    for h in range(h_qo):
        s = keys[h // group] @ q[0, h].astype(np.float64) * scale
        if softcap:
            s = softcap * np.tanh(s / softcap)
        if window:  # the query sits at position length - 1
            s = np.where(np.arange(length) > length - 1 - window, s, -np.inf)
        w = np.exp(s - s.max())
        ref[h] = w @ values[h // group] / w.sum()
        ref_lse[h] = (s.max() + np.log(w.sum())) / np.log(2)
    return args[-2].numpy()[0], args[-1].numpy()[0], ref, ref_lse


@pytest.mark.parametrize(
    "h_kv,h_qo,d,length",
    [
        (3, 9, 64, 200),  # SmolLM2: groups of 3
        (3, 9, 64, 64),  # every page full: none takes the mask's pass
        (2, 14, 64, 37),  # Qwen2-0.5B's groups of 7
        (8, 32, 128, 300),  # 7B/8B: groups of 4 heads of 128
        (4, 8, 256, 100),  # Gemma 2's 256-wide heads
        (1, 32, 64, 70),  # a group of 32: two sub-blocks of 16 heads
        (4, 4, 32, 5),
        (1, 3, 16, 300),
        (2, 4, 24, 50),  # V in slices of 8 where 16 does not divide the head
    ],
)
def test_decode_attention_matches_numpy(h_kv, h_qo, d, length):
    """GQA groups of 3, 7, 4, 32 and 1, one page or many, a partial last page whose unwritten slots
    hold NaN (scored side by side with the others, masked afterwards); 5 and 37 keys fill fewer
    pages than there are splits, so empty splits take part in the merge."""
    out, lse, ref, ref_lse = run_decode(h_kv, h_qo, d, length)
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("h_kv,h_qo,d,length", [(2, 14, 64, 200), (1, 32, 64, 70), (3, 9, 64, 37)])
def test_decode_attention_with_sixteen_registers(h_kv, h_qo, d, length):
    """The budget of AVX2 and NEON: Qwen2-0.5B's 7 heads score one key at a time and sum V 8
    dimensions at a time; a group of 32 goes in 4 sub-blocks of 8."""
    from harness.engines.tvm.kernels.decode_attention import GROUP_ACC_16

    out, lse, ref, ref_lse = run_decode(h_kv, h_qo, d, length, budget=GROUP_ACC_16)
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("heads", [(3, 9, 64), (2, 14, 64)])
@pytest.mark.parametrize("window,softcap", [(40, 0.0), (0, 2.0), (23, 2.0)])
def test_decode_attention_with_window_and_softcap(heads, window, softcap):
    """Windows of 40 and 23 keys over 200 leave whole pages (and parts of one) masked; a cap of
    2 bends most scores of these random inputs, so a missing tanh would show. Groups of 3 and 7."""
    out, lse, ref, ref_lse = run_decode(*heads, 200, window=window, softcap=softcap)
    np.testing.assert_allclose(out.astype(np.float64), ref, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-3, rtol=1e-4)


def test_a_group_scores_together_while_its_sums_fit_the_registers():
    from harness.engines.tvm.kernels.decode_attention import (
        GROUP_ACC_16,
        decode_heads_per_item,
        decode_keys_per_step,
        decode_value_slice,
    )

    # keys x heads >= 8 independent FMA chains, partial sums under 1 KiB
    assert [decode_keys_per_step(g) for g in (1, 2, 3, 4, 6)] == [8, 4, 4, 2, 2]
    # SmolLM2's 3 and Qwen2-0.5B's 7 heads score each K row together (4 x 3 and 2 x 7 sums)
    assert decode_heads_per_item(3) == 3 and decode_heads_per_item(7) == 7
    # one key at a time for 16 heads; 32 heads' sums would spill: halves of the group
    assert decode_heads_per_item(16) == 16 and decode_heads_per_item(32) == 16
    # V in slices whose accumulators stay in registers, dividing the head
    assert decode_value_slice(3, 64) == 16 and decode_value_slice(7, 64) == 16
    assert decode_value_slice(4, 256) == 16 and decode_value_slice(16, 64) == 8
    assert decode_value_slice(2, 24) == 8
    # 16 registers of 8 floats: SmolLM2's 4 keys x 3 heads still fit; Qwen2-0.5B's 7 heads take
    # one key and 8 dimensions at a time; a group of 32, sub-blocks of 8
    assert decode_keys_per_step(3, GROUP_ACC_16) == 4 and decode_value_slice(3, 64, 400) == 16
    assert decode_heads_per_item(7, GROUP_ACC_16) == 7 and decode_keys_per_step(7, 400) == 1
    assert decode_value_slice(7, 64, GROUP_ACC_16) == 8 and decode_heads_per_item(32, 400) == 8


def test_the_register_budget_follows_the_target(cpu_targets):
    from harness.engines.tvm.kernels.decode_attention import (
        GROUP_ACC,
        GROUP_ACC_16,
        decode_group_acc,
    )

    assert decode_group_acc(cpu_targets["avx2"]) == GROUP_ACC_16
    assert decode_group_acc(cpu_targets["neon"]) == GROUP_ACC_16
    assert decode_group_acc(cpu_targets["avx512"]) == GROUP_ACC


@pytest.mark.parametrize("dots", [8, 12, 16, 10, 3])
def test_score_sums_fold_rows_in_order(dots):
    """The rows' sums land in row order whether they are folded 8 at a time, 4 at a time or
    one by one (10 = 8 + 2 rows, 3 rows: none folded)."""
    import tvm
    from tvm.script import tirx as T

    from harness.engines.tvm.kernels.attention import DOT_LANES
    from harness.engines.tvm.kernels.decode_attention import _score_sums
    from harness.engines.tvm.targets import resolve

    score_sums = _score_sums(T, dots)

    @T.prim_func
    def main(part: T.Buffer((dots, DOT_LANES), "float32"), sums: T.Buffer((dots,), "float32")):
        score_sums(part, sums)

    lib = tvm.tirx.build(tvm.IRModule({"main": main}), target=resolve("llvm"))
    rows = np.random.default_rng(dots).standard_normal((dots, DOT_LANES)).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros(dots, np.float32))
    lib["main"](tvm.runtime.tensor(rows), out)
    np.testing.assert_allclose(out.numpy(), rows.sum(axis=1), rtol=1e-5, atol=1e-5)
