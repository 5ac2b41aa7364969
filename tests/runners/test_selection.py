"""Which runner a run uses: --runner, else python where the device has a Python, else the
device profile's runner; and the default runner keeps run ids as they were."""

from __future__ import annotations

import os
import types

import pytest

from harness.benchmark import _with_runner, _with_target, run_id_for
from harness.devices.profiles import get_profile
from harness.errors import UserError
from harness.results.schema import RunSpec


def device(serial: str, emulated: bool, python: str | None = None, features=("asimddp",)):
    """A phone as _with_runner sees it: python is how harness.runner starts there (None: no way);
    features: what every core lists in /proc/cpuinfo."""
    python = python or ("host" if emulated else None)
    if os.environ.get("SLM_BENCH_DEVICE_PYTHON"):
        python = "device"
    return types.SimpleNamespace(
        serial=serial,
        profile=get_profile("galaxy-s24"),
        python_runner=lambda: python,
        cpu_features=lambda: set(features),
    )


def test_profile_runner_applies_to_a_phone_without_any_python_only(monkeypatch):
    monkeypatch.delenv("SLM_BENCH_DEVICE_PYTHON", raising=False)
    spec = RunSpec(model="m", quantization="q4f16_1", device="adb:R5CX")
    assert get_profile("galaxy-s24").runner == "llama-bench"
    # no Python, no kit for its CPU
    assert _with_runner(spec, device("R5CX", emulated=False)).runner == "llama-bench"
    # the emulated one runs the host's
    assert _with_runner(spec, device("127.0.0.1:5600", emulated=True)).runner == "python"
    # a stock ARM64 S24: the TVM kit
    kit = _with_runner(spec, device("R5CX", emulated=False, python="kit"))
    assert (
        kit.runner == "python"
        and _with_target(kit, device("R5CX", False, "kit")).target == "arm64-linux"
    )
    with pytest.raises(UserError, match="runs arm64-linux bundles, not android-cpu"):
        _with_target(kit.model_copy(update={"target": "android-cpu"}), device("R5CX", False, "kit"))
    # host programs: host target
    assert _with_target(spec, device("127.0.0.1:5600", emulated=True)).target == "llvm"
    monkeypatch.setenv("SLM_BENCH_DEVICE_PYTHON", "/data/data/com.termux/files/usr/bin/python")
    assert _with_runner(spec, device("R5CX", emulated=False)).runner == "python"
    chosen = RunSpec(model="m", quantization="q4f16_1", runner="tvm-rpc")
    assert _with_runner(chosen, device("R5CX", emulated=False)).runner == "tvm-rpc"  # --runner wins
    with pytest.raises(UserError, match="unknown runner 'mlc'; known runners: python, llama-bench"):
        _with_runner(
            RunSpec(model="m", quantization="q4f16_1", runner="mlc"), device("R5CX", emulated=False)
        )


def test_the_kit_target_follows_the_phones_cpuinfo_and_either_build_can_be_forced():
    """i8mm in every core's Features line: the smmla build; without it the sdot one. --target
    picks either, but never the i8mm build for cores that would not execute it."""
    from harness.devices.topology import common_features

    spec = RunSpec(model="m", quantization="q4f16_1a8", device="adb:R5CX")
    s24 = device("R5CX", False, "kit", features=("asimddp", "i8mm"))
    older = device("R5CX", False, "kit", features=("asimddp",))
    assert _with_target(spec, s24).target == "arm64-linux-i8mm"
    assert _with_target(spec, older).target == "arm64-linux"
    plain = spec.model_copy(update={"target": "arm64-linux"})
    assert _with_target(plain, s24).target == "arm64-linux"
    forced = spec.model_copy(update={"target": "arm64-linux-i8mm"})
    assert _with_target(forced, s24).target == "arm64-linux-i8mm"
    with pytest.raises(UserError, match="do not list i8mm .* use --target arm64-linux"):
        _with_target(forced, older)
    # unknown features (an unreadable /proc/cpuinfo): the user's word stands
    assert _with_target(forced, device("R5CX", False, "kit", features=())).target == (
        "arm64-linux-i8mm"
    )
    # a core without i8mm (a big.LITTLE mix) keeps the whole phone on sdot
    mixed = (
        "processor\t: 0\nFeatures\t: fp asimddp\n\nprocessor\t: 1\nFeatures\t: fp asimddp i8mm\n"
    )
    assert common_features(mixed) == {"fp", "asimddp"}


def test_a_run_journaled_before_a_spec_field_existed_still_resumes():
    import json

    from harness.results.journal import run_differences
    from harness.results.schema import RunInfo

    spec = RunSpec(model="m", quantization="q4f16_1")
    legacy = json.loads(RunInfo(run_id=run_id_for(spec), spec=spec).model_dump_json())
    # run.json as written before this field existed
    del (
        legacy["spec"]["runner"],
        legacy["runner_binary"],
    )
    old = RunInfo.model_validate(legacy)
    assert old.spec.runner == "python" and not run_differences(
        old, RunInfo(run_id=run_id_for(spec), spec=spec)
    )
    # the id hashes what differs from the defaults, so the default output folder is the one it was
    assert run_id_for(old.spec) == run_id_for(RunSpec.model_validate(legacy["spec"]))
    assert run_id_for(spec.model_copy(update={"runner": "llama-bench"})) != run_id_for(spec)
