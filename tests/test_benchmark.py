"""One model on one device end to end (tiny dummy model, real compile and runner)."""

from __future__ import annotations

import json

import pytest

from harness.benchmark import run_benchmark
from harness.errors import UserError
from harness.results.journal import load
from harness.results.schema import RunSpec

QUIET = dict(log=lambda *_: None, write_reports=False)


def spec(**kw) -> RunSpec:
    base = dict(
        model="dummy:tiny-llama",
        quantization="q4f16_1",
        tasks=["summ", "qa"],
        lengths=[200, 400],
        repeats=2,
        warmup=1,
        max_new_tokens=4,
        docs=1,
    )
    return RunSpec(**{**base, **kw})


def test_records_obey_the_metric_definitions(tmp_path):
    out = run_benchmark(spec(), tmp_path / "run", **QUIET)
    records, problems = load(out.out_dir)
    assert not problems
    measured = [r for r in records if not r.warmup]
    assert len(measured) == 2 * 2 * 2 and out.measured == 8
    for r in records:
        s = r.stamps_ns
        assert s.t_start < s.t_prefill_end <= s.t_first <= s.t_last
        assert r.prefill_s <= r.ttft_s <= r.runtime_s
        assert r.itps == pytest.approx(r.input_tokens / r.prefill_s)
        assert r.otps == pytest.approx((r.output_tokens - 1) / r.decode_s)
        assert r.runtime_s == pytest.approx((s.t_last - s.t_start) / 1e9)
        assert r.output_tokens == 4 and r.weights == "dummy" and r.input_tokenizer == "cl100k"
        assert r.device.profile == "desktop-cpu" and r.device_state_before is not None
        assert r.kernels == "float" and r.activations == "float32"  # what q4f16_1 ran on


def test_rerun_measures_nothing_new(tmp_path):
    first = run_benchmark(spec(), tmp_path / "run", **QUIET)
    lines = (first.out_dir / "records.jsonl").read_text().splitlines()
    again = run_benchmark(spec(), tmp_path / "run", **QUIET)
    assert again.measured == 0 and again.skipped_done == 8
    assert (first.out_dir / "records.jsonl").read_text().splitlines() == lines


def test_runner_dying_mid_run_keeps_records_and_resume_finishes(tmp_path, monkeypatch):
    from harness.devices import base
    from harness.devices.base import DeviceGone

    original = base.RunnerProcess.request
    calls = {"n": 0}

    def dies_after_three(self, command):
        if command.get("op") == "run":
            calls["n"] += 1
            if calls["n"] == 4:
                # the device disappears mid-run (SIGKILL would read as out of memory)
                self.proc.terminate()
                self.proc.wait()
        return original(self, command)

    monkeypatch.setattr(base.RunnerProcess, "request", dies_after_three)
    with pytest.raises(DeviceGone, match="rerun the same command to resume"):
        run_benchmark(spec(), tmp_path / "run", **QUIET)
    records, _ = load(tmp_path / "run")
    assert len(records) == 3  # warm-up + 2 repeats of the first prompt, all journaled

    monkeypatch.setattr(base.RunnerProcess, "request", original)
    resumed = run_benchmark(spec(), tmp_path / "run", **QUIET)
    assert resumed.measured == 6  # only the missing measurements
    records, _ = load(tmp_path / "run")
    assert len({r.key for r in records if not r.warmup}) == 8


def test_length_beyond_the_context_window_is_refused(tmp_path, monkeypatch):
    from harness.models import registry
    from harness.models.config import ModelConfig

    small = registry.get_arch("llama").TINY.model_copy(update={"context_window": 512})
    monkeypatch.setattr(
        registry, "tiny_configs", lambda: {"tiny-llama": ModelConfig(**small.model_dump())}
    )
    with pytest.raises(
        UserError,
        match=r"L=1000 does not fit the model's context window of 512 .* use --lengths 200",
    ):
        run_benchmark(spec(lengths=[200, 1000]), tmp_path / "run", **QUIET)
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_different_spec_into_the_same_directory_is_refused(tmp_path):
    run_benchmark(spec(repeats=1, lengths=[200], tasks=["summ"]), tmp_path / "run", **QUIET)
    with pytest.raises(UserError, match="different spec"):
        run_benchmark(spec(repeats=2, lengths=[200], tasks=["summ"]), tmp_path / "run", **QUIET)


def test_runner_prints_schema_valid_json_lines(tmp_path):
    """The documented runner contract, exercised as a program (batch mode)."""
    import subprocess
    import sys

    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.prompts.suite import load_suite, select
    from harness.quantization import get_preset
    from harness.results.schema import Record

    bundle = compile_model(
        resolve_model("dummy:tiny-qwen2", log=lambda *_: None),
        get_preset("q4f32_1"),
        "llvm",
        log=lambda *_: None,
    )
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(p.model_dump_json() + "\n" for p in select(load_suite(), ["qs"], [200], 1))
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.runner",
            str(bundle),
            str(prompts),
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--max-new-tokens",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.splitlines()
    records = [Record.model_validate_json(line) for line in lines[:-1]]
    assert [r.warmup for r in records] == [True, False, False]
    summary = json.loads(lines[-1])["summary"]
    assert summary["requests"] == 3 and summary["overhead_s"] >= 0


def test_phone_target_on_the_desktop_is_refused_before_compiling(tmp_path):
    with pytest.raises(UserError, match="target android-cpu builds for a phone"):
        run_benchmark(spec(target="android-cpu"), tmp_path / "run", **QUIET)


def test_peak_memory_is_the_runner_own_not_the_harness(tmp_path):
    """Linux carries ru_maxrss over exec from the spawning process; a fat harness (here 1 GiB
    held while the runner starts) must not show up as the runner's peak memory."""
    from tests.conftest import make_engine_run

    ballast = bytearray(1 << 30)
    ballast[::4096] = b"\x01" * len(ballast[::4096])  # touch every page: it is resident
    run = make_engine_run(
        tmp_path / "run", "dummy:tiny-llama", repeats=1, lengths=(200,), tasks=("summ",)
    )
    records, _ = load(run)
    peak = max(r.peak_mem_bytes for r in records)
    assert 20 << 20 < peak < 768 << 20, peak  # a tiny model's runner: hundreds of MiB at most
    del ballast


SMALL = dict(tasks=["summ"], lengths=[200], repeats=2, warmup=0)


def plan_memory_as(monkeypatch, budget, total):
    """The device offers ``budget`` of ``total`` bytes (harness.memory.memory_of replaced)."""
    from harness import memory
    from harness.memory import DeviceMemory

    monkeypatch.setattr(memory, "memory_of", lambda *a, **k: DeviceMemory(budget, total))


def test_over_budget_runs_and_says_so_in_records_run_info_and_report(tmp_path, monkeypatch):
    from harness.benchmark import write_run_reports
    from harness.results.journal import read_run_info

    plan_memory_as(monkeypatch, 1000, 1 << 40)
    logs = []
    out = run_benchmark(spec(**SMALL), tmp_path / "run", log=logs.append, write_reports=False)
    assert out.measured == 2
    records, _ = load(out.out_dir)
    assert [(r.status, r.over_budget) for r in records] == [("ok", True), ("ok", True)]
    info = read_run_info(out.out_dir)
    assert (info.over_budget, info.memory_budget_bytes, info.memory_total_bytes) == (
        True,
        1000,
        1 << 40,
    )
    assert 1000 < info.memory_estimate_bytes < 1 << 30
    assert any(line.startswith("over budget: needs ~") for line in logs)
    report = write_run_reports(out.out_dir, log=lambda *_: None)
    markdown = next(p for p in report if p.name == "report.md").read_text()
    assert (
        f"{out.out_dir.name}: over budget: dummy:tiny-llama needs "
        f"~{info.memory_estimate_bytes / 1e9:.1f} GB, budget 0.0 GB of 1099.5 GB RAM" in markdown
    )


def test_within_budget_records_are_not_flagged(tmp_path, monkeypatch):
    plan_memory_as(monkeypatch, 1 << 40, 1 << 41)
    out = run_benchmark(spec(**SMALL), tmp_path / "run", **QUIET)
    records, _ = load(out.out_dir)
    assert records and not any(r.over_budget for r in records)


def test_strict_memory_refuses_over_budget_and_ram_refuses_always(tmp_path, monkeypatch):
    plan_memory_as(monkeypatch, 1000, 1 << 40)
    with pytest.raises(
        UserError,
        match=(
            r"dummy:tiny-llama needs ~.* the device budget "
            r"is 0.00 GB .*or leave out --strict-memory"
        ),
    ):
        run_benchmark(spec(**SMALL), tmp_path / "strict", strict_memory=True, **QUIET)
    plan_memory_as(monkeypatch, 1000, 2000)
    with pytest.raises(
        UserError,
        match=(
            r"more than the device's 0.00 GB of RAM; pass a smaller "
            r"--model or --quantization, or shorter --lengths$"
        ),
    ):
        run_benchmark(spec(**SMALL), tmp_path / "ram", **QUIET)
    assert (
        not (tmp_path / "strict" / "records.jsonl").exists()
        and not (tmp_path / "ram" / "records.jsonl").exists()
    )


def test_runner_killed_by_signal_9_is_a_failed_request_out_of_memory(tmp_path, monkeypatch):
    """The OOM killer / lmkd ends the runner with SIGKILL: that request is journaled as failed
    with the reason, the records before it are kept, and the run stops with OutOfMemory."""
    from harness.benchmark import OutOfMemory
    from harness.devices import base

    original = base.RunnerProcess.request
    calls = {"n": 0}

    def killed_on_the_second(self, command):
        if command.get("op") == "run":
            calls["n"] += 1
            if calls["n"] == 2:
                self.proc.kill()
                self.proc.wait()
        return original(self, command)

    monkeypatch.setattr(base.RunnerProcess, "request", killed_on_the_second)
    with pytest.raises(
        OutOfMemory,
        match=(
            r"^out of memory: the runner was killed by signal 9 "
            r".*estimate ~0\.\d\d GB vs .* GB RAM; try a smaller model"
        ),
    ):
        run_benchmark(spec(**SMALL), tmp_path / "run", **QUIET)
    records, _ = load(tmp_path / "run")
    assert [r.status for r in records] == ["ok", "failed"]
    assert records[1].repeat == 1 and records[1].error.startswith(
        "out of memory: the runner was killed by signal 9"
    )
    monkeypatch.setattr(base.RunnerProcess, "request", original)
    resumed = run_benchmark(spec(**SMALL), tmp_path / "run", **QUIET)
    assert resumed.measured == 1  # a failed request is measured again


def test_memory_error_in_the_runner_is_out_of_memory_and_the_run_goes_on(tmp_path, monkeypatch):
    from harness.devices import base

    original = base.RunnerProcess.request
    calls = {"n": 0}

    def memory_error_once(self, command):
        out = original(self, command)
        if command.get("op") == "run":
            calls["n"] += 1
            if calls["n"] == 1:  # what harness.runner returns when a request raises MemoryError
                out = {k: v for k, v in out.items() if k not in ("itps", "otps")} | {
                    "status": "failed",
                    "error": "MemoryError: Unable to allocate 1.50 GiB",
                }
        return out

    monkeypatch.setattr(base.RunnerProcess, "request", memory_error_once)
    out = run_benchmark(spec(**SMALL), tmp_path / "run", **QUIET)
    assert (out.measured, out.failed) == (1, 1)
    records, _ = load(out.out_dir)
    assert records[0].status == "failed" and records[0].error.startswith(
        "out of memory: MemoryError: Unable to allocate 1.50 GiB; estimate ~"
    )
    assert records[1].status == "ok"


def test_native_runner_oom_evidence_from_exit_137_and_the_phone_log():
    from types import SimpleNamespace

    from harness.benchmark import runner_oom_evidence
    from harness.runners.base import RunnerFailed

    killed = RunnerFailed(
        "llama-bench exited with code 137 on galaxy-s24 X (no output); see runner.log"
    )
    killed.returncode = 137
    quiet_phone = SimpleNamespace(oom_evidence=lambda: "")
    assert (
        runner_oom_evidence(SimpleNamespace(), quiet_phone, killed)
        == "the runner was killed by signal 9 (SIGKILL: lmkd or the OOM killer)"
    )
    lmkd = (
        "I lowmemorykiller: Kill 'llama-bench' (8812), "
        "uid 2000, oom_score_adj 0 to free 5123456kB rss"
    )
    assert (
        runner_oom_evidence(SimpleNamespace(), SimpleNamespace(oom_evidence=lambda: lmkd), killed)
        == lmkd
    )
    other = RunnerFailed(
        "llama-bench exited with code 1 on galaxy-s24 X (error: unknown model); see runner.log"
    )
    other.returncode = 1
    assert runner_oom_evidence(SimpleNamespace(), quiet_phone, other) is None
