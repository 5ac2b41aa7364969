"""slm-bench profile on the tiny Llama (a real compile and real VM calls, seconds)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.profiling import costs
from harness.profiling.schema import GROUPS, OVERHEAD


@pytest.fixture(scope="module")
def tiny_profile():
    from harness.profiling.collect import profile_local

    return profile_local("dummy:tiny-llama", "q4f16_1", [200], 4, rounds=3, log=lambda *_: None)


def test_groups_and_overhead_add_up_to_the_measured_phase(tiny_profile):
    assert {p.phase for p in tiny_profile.phases} == {"prefill", "decode"}
    for p in tiny_profile.phases:
        assert p.groups[-1].group == OVERHEAD
        assert sum(g.time_s for g in p.groups) == pytest.approx(p.wall_s, rel=1e-9)
        assert sum(g.share for g in p.groups) == pytest.approx(1.0)
        assert p.kernel_s + p.overhead_s == pytest.approx(p.wall_s)
        assert p.profiled_wall_s > 0 and p.calls > 0


def test_decode_adds_up_every_round_and_prefill_keeps_one(tiny_profile):
    prefill, decode = tiny_profile.phases
    assert (prefill.steps, decode.steps) == (1, 3 * 4)
    kernels = {k.name: k for k in decode.kernels}
    assert kernels["sampling"].calls == 12
    # on a CPU build the library scans the logits (argmax_cpu) and the host reads one int32
    scan = kernels["argmax_cpu"]
    assert scan.calls == 12 and scan.group == kernels["sampling"].group == "lm_head"
    assert kernels["sampling"].bytes == 12 * 4 and kernels["sampling"].ops == 0
    # a comparison per logit read (4 bytes each), and the int32 written
    assert scan.ops > 0 and scan.bytes == scan.ops * 4 + 12 * 4
    # every profiled decode step calls each layer's kernels once: the counts are whole steps
    assert all(k.calls % 12 == 0 for k in decode.kernels), {k.name: k.calls for k in decode.kernels}
    assert decode.expected_overhead_s > 0 and prefill.hook_per_arg_ns == decode.hook_per_arg_ns


def test_the_hook_charges_more_for_more_arguments():
    from harness.profiling.calibrate import HookCost, _fit_line, measure_hook_cost
    from harness.profiling.collect import Recorder

    assert _fit_line([(1, 5.0), (2, 7.0), (3, 9.0)]) == pytest.approx((3.0, 2.0))
    assert HookCost(100.0, 10.0, 50.0).floor_ns(4) == 140.0
    cost = measure_hook_cost(Recorder)  # a real compile of empty kernels, run hooked and plain
    # the VM wraps each argument for Python and back: never free, and dearer than dispatch
    assert cost.per_arg_ns > 0 and cost.base_ns > cost.dispatch_ns > 0


def test_the_memory_view_follows_a_runner_stage_by_stage(tiny_profile):
    (view,) = tiny_profile.memory
    names = [s.stage for s in view.stages]
    assert names[:5] == [
        "interpreter + numpy",
        "TVM runtime library",
        "tokenizer",
        "model library",
        "weights + KV cache",
    ]
    assert names[5].startswith(f"prefill of {view.input_tokens} tokens") and view.L == 200
    assert view.peak_bytes >= max(s.rss_bytes for s in view.stages)
    assert sum(s.grew_bytes for s in view.stages) == view.stages[-1].rss_bytes
    weights = view.stages[4]
    assert weights.expected_bytes == view.weight_bytes + view.kv_bytes > 0


def test_every_known_kernel_has_a_group(tiny_profile):
    for p in tiny_profile.phases:
        groups = {k.name: k.group for k in p.kernels}
        assert "other" not in groups.values(), groups
        assert set(groups.values()) <= set(GROUPS)
        matmuls = [n for n in groups if costs.MATMUL.match(n)]
        assert matmuls and all(groups[n] in ("linear", "lm_head") for n in matmuls)
        assert "lm_head" in groups.values() and "attention" in groups.values()
        assert "norm" in groups.values()


def test_matmul_bytes_and_ops_from_shapes():
    # gemm_q4_128x64 of 39 rows, as the VM calls it: x, packed words, scales, bias, y
    args = [
        costs.Tensor((39, 64), "float32"),
        costs.Tensor((8, 8, 16), "uint32"),
        costs.Tensor((8, 2, 16), "float16"),
        costs.Tensor((128,), "float32"),
        costs.Tensor((39, 128), "float32"),
    ]
    nbytes, ops = costs.call_cost("gemm_q4_128x64", args, context=39)
    assert nbytes == 39 * 64 * 4 + 8 * 8 * 16 * 4 + 8 * 2 * 16 * 2 + 128 * 4 + 39 * 128 * 4
    assert ops == 2 * 39 * 128 * 64
    assert costs.group_of("gemv_q4_512x64", vocab_size=512) == "lm_head"
    assert costs.group_of("gemv_q4_128x64", vocab_size=512) == "linear"


def test_a_decode_gemv_with_ops_folded_in_counts_their_tensors_and_its_own_k():
    """gemv_q4a8_64x128_swiglu_res: x is [1, 2K] (gate and up), r [1, N] the residual; the
    operations are the matmul's, with K from the name, not from x."""
    args = [
        costs.Tensor((1, 256), "float32"),  # x: gate | up
        costs.Tensor((1,), "float32"),  # no norm weight
        costs.Tensor((4, 4, 256), "uint8"),
        costs.Tensor((4, 4, 16), "float16"),
        costs.Tensor((64,), "float32"),
        costs.Tensor((1, 64), "float32"),  # the residual
        costs.Tensor((1, 64), "float32"),
    ]
    nbytes, ops = costs.call_cost("gemv_q4a8_64x128_swiglu_res", args, context=9)
    assert nbytes == sum(a.nbytes for a in args) and ops == 2 * 64 * 128
    assert costs.group_of("gemv_q4a8_64x128_norm", vocab_size=512) == "linear"


def test_attention_cost_reads_the_whole_cache():
    qkv, out = costs.Tensor((1, 8, 16), "float16"), costs.Tensor((1, 4, 16), "float16")
    nbytes, ops = costs.call_cost(
        "vm.builtin.attention_kv_cache_attention_with_fused_qkv", [qkv, out], context=100
    )
    hkv = 2  # (8 - 4) / 2
    assert nbytes == qkv.nbytes + out.nbytes + 2 * 100 * hkv * 16 * 2 + 2 * 1 * hkv * 16 * 2
    assert ops == 4 * 4 * 16 * 100


def test_cli_writes_the_files(tmp_path):
    from harness.cli import cli

    out = tmp_path / "prof"
    result = CliRunner().invoke(
        cli,
        ["profile", "--model", "dummy:tiny-llama", "--lengths", "200", "--decode-steps", "2"]
        + ["--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "VM + host overhead" in result.output and "check: kernels" in result.output
    assert "Memory at L=" in result.output and "peak (VmHWM" in result.output
    data = json.loads((out / "profile.json").read_text())
    assert [p["phase"] for p in data["phases"]] == ["prefill", "decode"]
    assert (out / "profile.md").read_text().startswith("# Profile:")
    assert (out / "profile.png").stat().st_size > 0


def test_the_gap_to_the_ceiling_names_each_groups_excess():
    from harness.profiling.render import gap_line
    from harness.profiling.schema import GroupStat, PhaseProfile

    groups = [  # 2 decode steps on a 10 GB/s machine
        GroupStat(group="linear", calls=8, time_s=0.004, bytes=30e6),  # 3 ms of bytes: +1 ms
        GroupStat(group="attention", calls=4, time_s=0.002, bytes=2e6),  # 0.2 ms: +1.8 ms
        GroupStat(group=OVERHEAD, calls=50, time_s=0.0004),  # no bytes: all of it
    ]
    phase = PhaseProfile(
        L=200,
        phase="decode",
        input_tokens=200,
        steps=2,
        wall_s=0.0064,
        profiled_wall_s=0.01,
        kernel_s=0.006,
        overhead_s=0.0004,
        calls=62,
        kernels=[],
        groups=groups,
    )
    line = gap_line(phase, 10.0)
    assert "3.20 ms a step against 1.60 ms for its 16.0 MB (50% of the ceiling)" in line
    assert line.endswith("KV append) +0.90, linear layers +0.50, VM + host overhead +0.20")
    assert gap_line(phase.model_copy(update={"phase": "prefill"}), 10.0) is None
