"""llama-bench end to end through the emulated Galaxy S24 and the real adb server: the binary, its
libraries and the GGUF are pushed, run through ``adb shell``, and parsed into records."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import ADB
from .test_parsers import llama_bin

if ADB is None:
    pytest.skip(
        "the `adb` binary is not installed (apt-get install -y adb)", allow_module_level=True
    )

from harness.errors import UserError


def _cli(*args):
    from click.testing import CliRunner

    from harness.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.slow
def test_cli_run_with_llama_bench_on_the_emulated_s24(adb_server, phone, tmp_path, monkeypatch):
    bench = llama_bin("llama-bench")
    if bench is None:
        pytest.skip(
            "llama-bench is not built here (slm-bench kit llama.cpp "
            "--arch x86_64, or set SLM_BENCH_LLAMA_BIN_DIR)"
        )
    monkeypatch.setenv("SLM_BENCH_LLAMA_BIN_DIR", str(bench.parent))
    out = tmp_path / "run"
    # one thread (this host's 2 cores are shared) on the Exynos S24's little cluster, cpu0-3
    args = [
        "run",
        "--model",
        "smollm2-135m-instruct",
        "--device",
        f"adb:{phone.serial}",
        "--adb-server",
        f"127.0.0.1:{adb_server}",
        "--runner",
        "llama-bench",
        "--lengths",
        "200",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--tasks",
        "summ",
        "--max-new-tokens",
        "4",
        "--threads",
        "1",
        "--cores",
        "little",
        "--idle-seconds",
        "0",
        "--no-report",
        "--out",
        str(out),
    ]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    from harness.results.journal import load

    records, problems = load(out)
    assert not problems and len(records) == 1
    rec = records[0]
    assert (rec.status, rec.runner, rec.engine, rec.device.model) == (
        "ok",
        "llama-bench",
        "llama.cpp",
        "SM-S921B",
    )
    assert (
        rec.output_tokens == 4 and rec.ttft_estimated and rec.prefill_s < rec.ttft_s < rec.runtime_s
    )
    # llama-bench ran a prompt of the request's length
    assert rec.runner_input_tokens == rec.input_tokens > 150
    assert rec.runner_stats["n_threads"] == 1 and rec.engine_version.endswith(")")
    # pinned through the phone's taskset, read back from the pinned shell; -C carries the same mask
    assert (rec.threads, rec.cpu_mask, rec.cpu_clusters, rec.placement_mismatch) == (
        1,
        "f",
        ["little"],
        None,
    )
    assert rec.runner_stats["cpu_mask"] == "0xf"
    assert 0 <= rec.cpu_load_other <= 1  # other processes' share, less llama-bench's own ticks
    # binary, libraries and model really went to the phone's storage, and their hashes are in
    # run.json
    info = json.loads((out / "run.json").read_text())
    assert (
        info["spec"]["runner"] == "llama-bench"
        and info["runner_binary"]["binary"]["name"] == "llama-bench"
    )
    assert (
        len(info["runner_binary"]["binary"]["sha256"]) == 64
        and "libllama.so" in info["runner_binary"]["libraries"]
    )
    pushed = phone.root / "data/local/tmp/slm-bench/runners"
    assert (pushed / f"llama.cpp-{bench.parent.name}" / "llama-bench").is_file()
    assert list((pushed / "models").glob("*.gguf")) and info["deploy"]["bytes_pushed"] > 50_000_000
    # a second run finds the binary, libraries and model on the phone by their sha256: nothing is
    # pushed again
    again = _cli(*args[:-1], str(tmp_path / "run2"))
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "run2" / "run.json").read_text())["deploy"]["bytes_pushed"] == 0
    assert load(tmp_path / "run2")[0][0].status == "ok"
    # llama-cli (llama-completion) on the same phone runs the real prompt text through its chat
    # template
    if llama_bin("llama-completion") is not None:
        cli_run = _cli(
            *[a if a != "llama-bench" else "llama-cli" for a in args[:-1]], str(tmp_path / "run3")
        )
        assert cli_run.exit_code == 0, cli_run.output
        (rec3,), _ = load(tmp_path / "run3")
        assert (rec3.status, rec3.runner, rec3.output_tokens, rec3.ttft_s) == (
            "ok",
            "llama-cli",
            4,
            rec3.prefill_s,
        )
        # llama.cpp's tokenizer vs the harness's, same text
        assert abs(rec3.runner_input_tokens - rec3.input_tokens) <= 2


def test_wrong_abi_and_missing_binary_are_one_line(adb_server, phone, tmp_path, monkeypatch):
    import sys

    from harness.devices.adb import AdbDevice
    from harness.runners.base import RunnerContext, check_abi, elf_machine
    from harness.runners.llama_cpp import LlamaBench

    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    ctx = RunnerContext(
        device=dev,
        prompts={},
        input_lengths={},
        template={},
        max_new_tokens=4,
        log_path=tmp_path / "runner.log",
    )
    runner = LlamaBench(ctx)
    assert runner.target.arch() == os.uname().machine  # the emulated phone runs host programs
    # an arm64 build (what a real S24 needs) is refused on this x86 "phone", before anything is
    # pushed
    arm = tmp_path / "llama-bench"
    host = Path(sys.executable).resolve().read_bytes()[:64]
    arm.write_bytes(host[:18] + (0xB7).to_bytes(2, "little") + host[20:])
    assert elf_machine(arm) == "aarch64"
    with pytest.raises(
        UserError,
        match=(
            r"llama-bench is built for aarch64 but galaxy-s24 "
            r".* is x86_64; build llama.cpp for that CPU"
        ),
    ):
        check_abi(arm, runner.target.arch(), runner.target.name, "build llama.cpp for that CPU")
    monkeypatch.setenv("SLM_BENCH_LLAMA_BENCH", str(tmp_path / "nope"))
    with pytest.raises(
        UserError, match=r"SLM_BENCH_LLAMA_BENCH points at .*nope, which does not exist"
    ):
        runner.setup()
    monkeypatch.delenv("SLM_BENCH_LLAMA_BENCH")
    monkeypatch.delenv("SLM_BENCH_LLAMA_BIN_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    from harness.kits import llamacpp

    def no_cmake(arch, log=print, announce=None):
        raise UserError(
            "building llama.cpp needs cmake, which is not "
            "on PATH; install it: apt-get install -y cmake"
        )

    # configured nothing: the harness's own build is tried last
    monkeypatch.setattr(llamacpp, "build_llamacpp", no_cmake)
    # (PATH= hides the phone's `uname` too, so it reports its ABI property: arm64, then PATH is
    # not searched)
    with pytest.raises(
        UserError,
        match=(
            r"runner binary llama-bench not found \(looked at --runner-bin, "
            r"SLM_BENCH_LLAMA_BENCH, SLM_BENCH_LLAMA_BIN_DIR(, PATH)?\) "
            r"and the harness could not build it: building llama.cpp needs cmake"
        ),
    ):
        runner.setup()


def test_a_runner_exiting_non_zero_is_one_line(adb_server, phone, tmp_path):
    from harness.devices.adb import AdbDevice
    from harness.runners.base import NativeRunner, RunnerContext, RunnerFailed

    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    runner = NativeRunner(
        RunnerContext(
            device=dev,
            prompts={},
            input_lengths={},
            template={},
            max_new_tokens=4,
            log_path=tmp_path / "runner.log",
        )
    )
    with pytest.raises(
        RunnerFailed,
        match=(
            r"llama-bench exited with code 3 on galaxy-s24 .* "
            r"\(error: failed to load model\); see runner.log"
        ),
    ):
        runner.shell(
            "echo 'error: failed to load model' >&2; exit 3", "llama-bench", "see runner.log"
        )
    assert "failed to load model" in (tmp_path / "runner.log").read_text()


def test_unknown_runner_lists_the_known_ones():
    from harness.runners import get_runner

    with pytest.raises(
        UserError,
        match=(
            r"unknown runner 'mlc'; known runners: python, "
            r"llama-bench, llama-cli, mlc-cli, executorch, tvm-rpc"
        ),
    ):
        get_runner("mlc")


@pytest.mark.slow
def test_llama_bench_on_the_emulated_arm64_s24_is_the_harness_built_static_kit(
    adb_server, tmp_path_factory, monkeypatch
):
    """Nothing configured and an ARM64 phone: the harness builds (or finds) its static aarch64
    llama.cpp, pushes that one file, and measures with it under qemu (the S24's max,sve=off)."""
    from harness.kits import llamacpp
    from harness.kits.userland import arm64_blocker
    from tests.devices.conftest import TIME_SCALE, wait_online
    from tests.engines.test_llamacpp import WHY_NOT

    if (blocker := arm64_blocker()) is not None:
        pytest.skip(f"no ARM64 emulation here: {blocker}")
    if llamacpp.built_kit("aarch64") is None and not shutil.which("aarch64-linux-gnu-g++"):
        pytest.skip(
            "no aarch64 llama.cpp kit and no cross compiler to "
            "build it (apt-get install -y g++-aarch64-linux-gnu)"
        )
    if WHY_NOT:
        pytest.skip(WHY_NOT)  # the Q4_0 bundle is quantized on the host by llama-cpp-python
    from harness.benchmark import run_benchmark
    from harness.devices.emulated.adbd import EmulatedDevice, load_profile
    from harness.results.journal import load
    from harness.results.schema import RunSpec

    for var in ("SLM_BENCH_LLAMA_BIN_DIR", "SLM_BENCH_LLAMA_BENCH"):
        monkeypatch.delenv(var, raising=False)
    device = EmulatedDevice(
        load_profile("galaxy-s24"),
        tmp_path_factory.mktemp("arm-phone"),
        time_scale=TIME_SCALE,
        arch="aarch64",
    )
    device.start()
    try:
        wait_online(adb_server, device.serial)
        spec = RunSpec(
            model="dummy:tiny-llama",
            quantization="q4f16_1",
            engine="llama.cpp",
            runner="llama-bench",
            device=f"adb:{device.serial}",
            tasks=["summ"],
            lengths=[200],
            docs=1,
            repeats=1,
            warmup=0,
            max_new_tokens=4,
            threads=[1],
            cores=["prime+big"],
            idle_s=0,
        )
        out = tmp_path_factory.mktemp("run")
        outcome = run_benchmark(
            spec,
            out,
            write_reports=False,
            log=lambda *_: None,
            adb_server=f"127.0.0.1:{adb_server}",
        )
    finally:
        device.stop()
    (rec,), problems = load(out)
    assert not problems and outcome.measured == 1
    assert (rec.status, rec.runner, rec.engine, rec.output_tokens) == (
        "ok",
        "llama-bench",
        "llama.cpp",
        4,
    )
    assert (
        rec.runner_stats["model_type"].endswith("Q4_0")
        and rec.engine_version == "0 (llama-cpp-python-0.3.36)"
    )
    # the ARM phone's own taskset
    assert (rec.threads, rec.cpu_mask, rec.cpu_list, rec.cpu_clusters) == (
        1,
        "380",
        "7-9",
        ["prime", "big"],
    )
    binary = json.loads((out / "run.json").read_text())["runner_binary"]
    assert (
        binary["binary"]["source"] == f"harness-built llama.cpp {llamacpp.VERSION} static aarch64"
        and binary["libraries"] == {}
    )
    kit = llamacpp.built_kit("aarch64")
    pushed = (
        device.root
        / "data/local/tmp/slm-bench/runners"
        / f"llama.cpp-{kit.parent.name}"
        / "llama-bench"
    )
    # the static file itself, nothing beside it
    assert pushed.read_bytes() == (kit / "llama-bench").read_bytes()
