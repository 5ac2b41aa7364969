"""Memory planning: the estimate, what a device offers, the judgement of a cell, and what an
out-of-memory looks like (harness.memory)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness import memory
from harness.errors import UserError
from harness.memory import (
    DeviceMemory,
    device_memory,
    estimate_memory,
    kv_cache_bytes,
    memory_of,
    oom_message,
    out_of_memory,
    plan_memory,
)


def catalog_config(name: str):
    from harness.models.catalog import load_catalog

    return load_catalog()[name].config


def test_kv_cache_and_estimate_add_up():
    from harness.models.catalog import packed_bytes
    from harness.quantization import get_preset

    cfg, preset = catalog_config("llama-3.1-8b-instruct"), get_preset("q4f16_1")
    # 32 layers x 8 KV heads x 128 dims, K and V, fp16: 128 KiB per token
    assert kv_cache_bytes(cfg, preset, 1000) == 2 * 32 * 8 * 128 * 2 * 1000
    estimate = estimate_memory(cfg, preset, 1428)
    fixed = (
        packed_bytes(cfg, preset)
        + kv_cache_bytes(cfg, preset, 1428)
        + memory.RUNTIME_OVERHEAD_BYTES
    )
    # the rest: live fp32 prefill buffers of the widest layer (2 x MLP + 4 x hidden + q/k/v heads)
    width = 2 * 14336 + 4 * 4096 + (32 + 2 * 8) * 128
    assert estimate - fixed == memory.ACTIVATION_BUFFERS * 4 * width * 1428
    assert estimate_memory(cfg, preset, 200) < estimate  # a shorter context needs less


def test_within_budget_runs_unflagged():
    plan = plan_memory(3_000_000_000, 4_000_000_000, 8_000_000_000)
    assert (plan.over_budget, plan.skip_reason, plan.warning()) == (False, None, None)


def test_over_budget_runs_with_a_warning_and_strict_planning_skips_it():
    plan = plan_memory(5_770_000_000, 4_000_000_000, 8_000_000_000)
    assert plan.over_budget and plan.skip_reason is None
    assert (
        "needs ~5.77 GB, the device budget is 4.00 GB of 8.00 GB RAM; running anyway"
        in plan.warning()
    )
    strict = plan_memory(
        5_770_000_000,
        4_000_000_000,
        8_000_000_000,
        strict=True,
        what="weights + KV cache at L=1000 + runtime",
    )
    assert strict.over_budget
    assert strict.skip_reason == (
        "needs ~5.77 GB (weights + KV cache at L=1000 + runtime), the "
        "device budget is 4.00 GB (--strict-memory skips cells over budget)"
    )
    assert strict.warning() is None  # skipped, so nothing runs over budget


def test_over_total_ram_is_skipped_even_without_strict_planning():
    plan = plan_memory(9_000_000_000, 4_000_000_000, 8_000_000_000)
    assert plan.skip_reason == "needs ~9.00 GB, more than the device's 8.00 GB of RAM"
    # without a budget (unknown), the RAM still decides
    assert plan_memory(9_000_000_000, None, 8_000_000_000).skip_reason is not None
    assert not plan_memory(7_000_000_000, None, 8_000_000_000).over_budget


def test_unknown_ram_or_estimate_never_skips_without_strict_planning():
    plan = plan_memory(9_000_000_000, 4_000_000_000, None)
    assert plan.over_budget and plan.skip_reason is None and "total RAM unknown" in plan.warning()
    assert plan_memory(None, 4_000_000_000, 8_000_000_000) == memory.MemoryPlan(
        None, 4_000_000_000, 8_000_000_000
    )


@pytest.mark.parametrize("returncode", [-9, 137])
def test_exit_by_signal_9_is_out_of_memory(returncode):
    assert (
        out_of_memory(returncode, "")
        == "the runner was killed by signal 9 (SIGKILL: lmkd or the OOM killer)"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "04-12 10:01:02.345  1234  1234 I lowmemorykiller: Kill "
            "'python3' (8812), uid 2000, oom_score_adj 0 to free 5123456kB",
            "04-12 10:01:02.345  1234  1234 I lowmemorykiller: Kill "
            "'python3' (8812), uid 2000, oom_score_adj 0 to free 5123456kB",
        ),
        (
            "loading\nOut of memory: Killed process 4242 (llama-bench) total-vm:6000000kB\ndone",
            "Out of memory: Killed process 4242 (llama-bench) total-vm:6000000kB",
        ),
        (
            "MemoryError: Unable to allocate 1.50 GiB for an array",
            "MemoryError: Unable to allocate 1.50 GiB for an array",
        ),
        (
            "terminate called after throwing an instance of 'std::bad_alloc'",
            "terminate called after throwing an instance of 'std::bad_alloc'",
        ),
        (
            "[   12.3] python3 invoked oom-killer: gfp_mask=0x140cca",
            "[   12.3] python3 invoked oom-killer: gfp_mask=0x140cca",
        ),
    ],
)
def test_memory_words_in_the_log_are_out_of_memory(text, expected):
    assert out_of_memory(1, text) == expected
    assert out_of_memory(None, text) == expected  # an adb shell v1 stream has no exit code


@pytest.mark.parametrize(
    "returncode, text",
    [
        (1, "error: failed to load model 'x.gguf'"),
        (-15, ""),  # SIGTERM: stopped, not starved
        (None, "zoom, room and bloom: words that only contain the letters"),
        (0, None),
    ],
)
def test_other_failures_are_not_out_of_memory(returncode, text):
    assert out_of_memory(returncode, text) is None


def test_oom_message_names_the_plan_and_the_fix():
    message = oom_message(
        "the runner was killed by signal 9 (SIGKILL: lmkd or the OOM killer)",
        6_210_000_000,
        7_500_000_000,
    )
    assert message == (
        "out of memory: the runner was killed by signal 9 (SIGKILL: lmkd or the OOM killer); "
        "estimate ~6.21 GB vs 7.50 GB RAM; try a smaller model or quantization, or a shorter L"
    )
    assert "estimate" not in oom_message("MemoryError: x")


def fake_device(kind: str, budget, total, ram_bytes):
    from harness.devices.profiles import DeviceProfile

    profile = DeviceProfile(
        name="p",
        description="d",
        kind=kind,
        compile_target="llvm",
        memory_budget_bytes=budget,
        memory_total_bytes=total,
    )
    return SimpleNamespace(profile=profile, info=lambda: SimpleNamespace(ram_bytes=ram_bytes))


def test_a_reachable_phone_is_planned_with_its_meminfo_total_else_its_profile():
    assert memory_of(
        fake_device("adb", 4_000_000_000, 8_000_000_000, 7_612_000_000)
    ) == DeviceMemory(4_000_000_000, 7_612_000_000)
    assert memory_of(fake_device("adb", 4_000_000_000, 8_000_000_000, None)) == DeviceMemory(
        4_000_000_000, 8_000_000_000
    )


def test_the_desktop_budget_is_a_share_of_its_available_ram():
    import psutil

    here = memory_of(fake_device("local", None, None, psutil.virtual_memory().total))
    assert here.total == psutil.virtual_memory().total
    assert 0 < here.budget <= memory.LOCAL_BUDGET_FRACTION * psutil.virtual_memory().total
    assert device_memory("local").total == psutil.virtual_memory().total


def test_an_unreachable_phone_is_planned_with_the_fallback_profile(monkeypatch):
    import harness.devices

    def unreachable(*a, **k):
        raise UserError("cannot reach the adb server")

    monkeypatch.setattr(harness.devices, "open_device", unreachable)
    assert device_memory("adb", fallback_profile="galaxy-s24") == DeviceMemory(
        4_000_000_000, 8_000_000_000
    )
    assert device_memory("adb") == DeviceMemory(None, None)
