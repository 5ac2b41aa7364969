"""AdbDevice through the real adb server against the emulated Galaxy S24, and a whole benchmark
run on it: adbutils -> adb server -> emulated adbd -> the runner inside the phone's sandbox."""

from __future__ import annotations

import json

import pytest

from .conftest import ADB

if ADB is None:
    pytest.skip(
        "the `adb` binary is not installed (apt-get install -y adb)", allow_module_level=True
    )

from harness.benchmark import run_benchmark  # noqa: E402
from harness.devices.adb import AdbDevice  # noqa: E402
from harness.errors import UserError  # noqa: E402
from harness.results.journal import load  # noqa: E402
from harness.results.schema import RunSpec  # noqa: E402


def test_device_facts_come_from_the_phone(adb_server, phone):
    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    info = dev.info()
    assert (info.model, info.brand, info.soc, info.profile) == (
        "SM-S921B",
        "samsung",
        "s5e9945",
        "galaxy-s24",
    )
    assert (
        info.os == "Android 14 (SDK 34)"
        and info.ram_bytes == 8_000_000_000
        and info.abi == "arm64-v8a"
    )
    state = dev.state()
    assert (
        15 < state.battery_temp_c < 60
        and state.cpu_temp_c is not None
        and state.mem_available_bytes > 0
    )


def test_only_device_and_unknown_serial(adb_server, phone):
    server = f"127.0.0.1:{adb_server}"
    assert AdbDevice(None, server).serial == phone.serial  # `--device adb` picks the only one
    with pytest.raises(
        UserError, match=rf"device nope is not attached \(attached: {phone.serial}\)"
    ):
        AdbDevice("nope", server)


def test_unreachable_adb_server_is_one_line():
    with pytest.raises(
        UserError, match="cannot reach the adb server at 127.0.0.1:1 .* --adb-server HOST:PORT"
    ):
        AdbDevice(None, "127.0.0.1:1")


def test_benchmark_runs_on_the_emulated_phone_and_resumes(adb_server, phone, tmp_path):
    spec = RunSpec(
        model="dummy:tiny-llama",
        quantization="q4f16_1",
        device=f"adb:{phone.serial}",
        tasks=["qa"],
        lengths=[200, 400],
        repeats=2,
        warmup=1,
        max_new_tokens=4,
        docs=1,
        idle_s=1,
    )
    kw = dict(log=lambda *_: None, write_reports=False, adb_server=f"127.0.0.1:{adb_server}")
    out = run_benchmark(spec, tmp_path / "run", **kw)
    records, problems = load(out.out_dir)
    assert not problems and out.measured == 4 and out.failed == 0
    for r in records:
        assert (
            r.device.model == "SM-S921B" and r.device.profile == "galaxy-s24" and r.status == "ok"
        )
        # the phone's default: every core but the A520s (cpu4-9), one thread each, read back from
        # the runner
        assert (r.cpu_mask, r.threads, r.cpu_clusters, r.placement_default) == (
            "3f0",
            6,
            ["prime", "big", "mid"],
            True,
        )
        # the emulated fuel gauge draws 0.25-2.5 A at 3.7-4.3 V: energy = mean power x runtime
        assert 0.25 * 3.7 * r.runtime_s <= r.energy_j <= 2.5 * 4.3 * r.runtime_s
        assert r.energy_j_per_token == pytest.approx(
            r.energy_j / (r.input_tokens + r.output_tokens), rel=1e-3
        )
        # above idle: the gauge sampled for a second before the run, nothing running (0.25 A idle)
        assert 0.25 * 3.7 <= r.idle_power_w <= 0.3 * 4.3
        assert r.energy_j_above_idle == pytest.approx(
            max(r.energy_j / r.runtime_s - r.idle_power_w, 0) * r.runtime_s
        )
        assert (
            r.device_state_before.battery_temp_c is not None
            and r.prefill_s <= r.ttft_s <= r.runtime_s
        )
    # the bundle and runner really went to the phone's storage
    pushed = list(
        (phone.root / "data" / "local" / "tmp" / "slm-bench" / "bundles").glob("*/manifest.json")
    )
    assert len(pushed) == 1
    first_push = json.loads((out.out_dir / "run.json").read_text())["deploy"]["bytes_pushed"]
    assert first_push > 100_000  # the library, weight shards, config and manifest went over
    again = run_benchmark(spec, tmp_path / "run", **kw)
    assert again.measured == 0
    assert json.loads((out.out_dir / "run.json").read_text())["deploy"]["bytes_pushed"] == 0


def test_shell_metacharacters_in_names_reach_the_device_as_names(adb_server, phone, tmp_path):
    import shutil

    from harness.engines.tvm.compile import compile_model, verify_bundle
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    bundle = compile_model(
        resolve_model("dummy:tiny-qwen2", log=lambda *_: None),
        get_preset("q4f32_1"),
        "llvm",
        log=lambda *_: None,
    )
    evil = tmp_path / "b; touch PWNED $(touch PWNED2) `touch PWNED3`"
    shutil.copytree(bundle, evil)
    verify_bundle(evil)
    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    remote = dev.deploy(evil)
    assert dev.bytes_pushed > 0
    landed = phone.root / remote.lstrip("/") / "manifest.json"
    assert landed.is_file()
    assert not list(phone.root.rglob("PWNED*")) and not list(tmp_path.rglob("PWNED*"))
    assert not any(p.name.startswith("PWNED") for p in __import__("pathlib").Path.cwd().iterdir())


def test_interrupted_push_is_detected_and_redone(adb_server, phone):
    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    bundle = compile_model(
        resolve_model("dummy:tiny-llama", log=lambda *_: None),
        get_preset("q4f16_1"),
        "llvm",
        log=lambda *_: None,
    )
    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    remote = dev.deploy(bundle)
    shard = phone.root / remote.lstrip("/") / "params" / "shard_000.bin"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a push cut off halfway
    dev.deploy(bundle)
    assert dev.bytes_pushed == (bundle / "params" / "shard_000.bin").stat().st_size
    assert shard.read_bytes() == (bundle / "params" / "shard_000.bin").read_bytes()


def test_phone_vanishing_mid_run_loses_nothing_and_rerun_completes(
    adb_server, tmp_path, monkeypatch
):
    from harness.devices import base
    from harness.devices.base import DeviceGone
    from harness.devices.emulated.adbd import EmulatedDevice, load_profile

    from .conftest import free_port, wait_online

    port, root = free_port(), tmp_path / "phone"
    phone = EmulatedDevice(load_profile("galaxy-s24"), root, port=port)
    phone.start()
    wait_online(adb_server, phone.serial)
    spec = RunSpec(
        model="dummy:tiny-llama",
        quantization="q4f16_1",
        device=f"adb:{phone.serial}",
        tasks=["summ"],
        lengths=[200, 400],
        repeats=2,
        warmup=1,
        max_new_tokens=4,
        docs=1,
        idle_s=0,
    )
    kw = dict(log=lambda *_: None, write_reports=False, adb_server=f"127.0.0.1:{adb_server}")

    original, calls = base.RunnerProcess.request, {"n": 0}

    def unplugged_after_three(self, command):
        if command.get("op") == "run":
            calls["n"] += 1
            if calls["n"] == 4:
                phone.stop()  # the phone disappears: its adbd and every stream on it are gone
        return original(self, command)

    monkeypatch.setattr(base.RunnerProcess, "request", unplugged_after_three)
    with pytest.raises(DeviceGone, match="rerun the same command to resume"):
        run_benchmark(spec, tmp_path / "run", **kw)
    records, problems = load(tmp_path / "run")
    assert len(records) == 3 and not problems

    monkeypatch.setattr(base.RunnerProcess, "request", original)
    # plugged in again, same storage
    phone = EmulatedDevice(load_profile("galaxy-s24"), root, port=port)
    phone.start()
    wait_online(adb_server, phone.serial)
    try:
        resumed = run_benchmark(spec, tmp_path / "run", **kw)
    finally:
        phone.stop()
    assert resumed.measured == 2  # only the two missing measurements
    records, _ = load(tmp_path / "run")
    assert len({r.key for r in records if not r.warmup}) == 4
    # storage kept
    assert json.loads((tmp_path / "run" / "run.json").read_text())["deploy"]["bytes_pushed"] == 0


def test_thermal_wait_is_bounded_and_recorded(adb_server, phone):
    from harness.devices.conditions import wait_until_cool

    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    now = dev.state().battery_temp_c
    slept, said = [], []
    spec_hot = RunSpec(model="m", quantization="q4f16_1", max_temp_c=now - 30, max_wait_s=0.05)
    waited, cooled, state = wait_until_cool(
        dev, spec_hot, log=said.append, sleep=lambda s: slept.append(s)
    )
    assert cooled is False and waited >= 0.05 and state.battery_temp_c is not None and slept
    assert (
        said[0].startswith("waiting for the device to cool:")
        and "recorded as cooled=false" in said[-1]
    )
    spec_ok = RunSpec(model="m", quantization="q4f16_1", max_temp_c=now + 30)
    waited_ok, cooled_ok, _ = wait_until_cool(dev, spec_ok, log=lambda *_: None)
    assert cooled_ok and waited_ok < 1.0
    # discharging unless --charging
    assert state.charging is False and len(state.thermal_zones_c) == 6


def test_device_lock_keeps_two_runs_apart(phone):
    from harness.devices.lock import device_lock

    with device_lock(phone.serial):
        with pytest.raises(
            UserError,
            match=rf"device {phone.serial} is in use by another slm-bench run \(pid \d+\)",
        ):
            with device_lock(phone.serial):
                pass
    with device_lock(phone.serial):  # released: free again
        pass


def test_full_device_is_refused_before_pushing_and_clean_removes_everything(
    adb_server, phone, monkeypatch
):
    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    bundle = compile_model(
        resolve_model("dummy:tiny-slimlm", log=lambda *_: None),
        get_preset("q4f16_1"),
        "llvm",
        log=lambda *_: None,
    )
    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    assert dev.free_bytes() > 0
    monkeypatch.setattr(AdbDevice, "free_bytes", lambda self: 1000)
    with pytest.raises(
        UserError,
        match=(
            r"has 0 MB free under /data/local/tmp/slm-bench, the bundle "
            r"needs \d+ MB; free space or run `slm-bench devices clean"
        ),
    ):
        dev.deploy(bundle)
    monkeypatch.undo()
    dev.deploy(bundle)
    assert (phone.root / "data/local/tmp/slm-bench").is_dir()
    dev.clean()
    assert not (phone.root / "data/local/tmp/slm-bench").exists()


@pytest.mark.slow
def test_cli_run_of_the_real_model_on_the_emulated_s24(adb_server, phone, tmp_path):
    """The issue's done-when, through the command line: SmolLM2 (real weights) on the emulated
    Galaxy S24 behind a private adb server."""
    from click.testing import CliRunner

    from harness.cli import cli

    args = [
        "run",
        "--model",
        "smollm2-135m-instruct",
        "--device",
        f"adb:{phone.serial}",
        "--adb-server",
        f"127.0.0.1:{adb_server}",
        "--tasks",
        "qa",
        "--lengths",
        "200",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--max-new-tokens",
        "8",
        "--out",
        str(tmp_path / "run"),
        "--no-report",
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records, _ = load(tmp_path / "run")
    assert len(records) == 1
    r = records[0]
    assert (
        r.status == "ok"
        and r.device.model == "SM-S921B"
        and r.weights == "real"
        and r.input_tokenizer == "model"
    )
    assert r.output_text and r.device_state_before.battery_temp_c is not None
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "nothing to measure" in again.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["deploy"]["bytes_pushed"] == 0


def test_adb_server_restart_is_retried_then_works(tmp_path, monkeypatch, capsys):
    """The adb server dies and comes back (same port): a bounded reconnect keeps the run going."""
    from harness.devices import adb as adb_mod
    from harness.devices.emulated.adbd import EmulatedDevice, load_profile

    from .conftest import adb, free_port, wait_online

    monkeypatch.setattr(adb_mod, "RETRY_DELAY_S", 0.2)
    server = free_port()
    assert adb(server, "start-server").returncode == 0
    phone = EmulatedDevice(load_profile("galaxy-s24"), tmp_path / "phone")
    phone.start()
    try:
        wait_online(server, phone.serial)
        dev = AdbDevice(phone.serial, f"127.0.0.1:{server}")
        adb(server, "kill-server")
        # a fresh server knows no TCP devices yet
        assert adb(server, "start-server").returncode == 0
        assert dev.info().model == "SM-S921B"  # reconnected by the retry
        assert "reconnecting (1/3)" in capsys.readouterr().err
    finally:
        adb(server, "kill-server")
        phone.stop()


def test_two_phones_in_parallel_each_with_its_own_journal(adb_server, phone, tmp_path):
    from harness.benchmark import run_on_devices
    from harness.devices.emulated.adbd import EmulatedDevice, load_profile

    from .conftest import wait_online

    second = EmulatedDevice(load_profile("android-emulator"), tmp_path / "phone2")
    second.start()
    try:
        wait_online(adb_server, second.serial)
        spec = RunSpec(
            model="dummy:tiny-qwen2",
            quantization="q4f16_1",
            tasks=["summ"],
            lengths=[200],
            repeats=2,
            warmup=1,
            max_new_tokens=4,
            docs=1,
        )
        outcomes = run_on_devices(
            spec,
            [f"adb:{phone.serial}", f"adb:{second.serial}"],
            tmp_path / "runs",
            log=lambda *_: None,
            write_reports=False,
            adb_server=f"127.0.0.1:{adb_server}",
        )
    finally:
        second.stop()
    assert [o.measured for o in outcomes] == [2, 2]
    models = {load(o.out_dir)[0][0].device.model for o in outcomes}
    assert models == {"SM-S921B", "sdk_gphone64_arm64"}
    assert {o.out_dir.name for o in outcomes} == {
        f"adb_{phone.serial.replace(':', '_')}",
        f"adb_{second.serial.replace(':', '_')}",
    }


def test_a_real_phone_without_python_gets_a_clear_error(adb_server, phone, monkeypatch):
    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    # the emulated phone runs the host's Python
    assert dev.runner_python() == __import__("sys").executable
    dev.props["ro.slm_bench.host_python"] = ""  # as on a stock Galaxy S24
    monkeypatch.delenv("SLM_BENCH_DEVICE_PYTHON", raising=False)
    with pytest.raises(
        UserError, match=r"has no Python runner configured: .*SLM_BENCH_DEVICE_PYTHON"
    ):
        dev.runner_python()
    monkeypatch.setenv("SLM_BENCH_DEVICE_PYTHON", "/data/data/com.termux/files/usr/bin/python")
    assert dev.runner_python() == "/data/data/com.termux/files/usr/bin/python"


def test_the_arm64_kit_is_refused_on_a_phone_of_another_cpu(adb_server, phone, monkeypatch):
    """The x86_64 emulated phone claims arm64-v8a in its profile but runs x86_64 programs: it
    gets no kit by default, and installing one is refused before anything is pushed."""
    monkeypatch.delenv("SLM_BENCH_DEVICE_PYTHON", raising=False)
    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    dev.props["ro.slm_bench.host_python"] = ""  # no host Python either
    assert dev.props["ro.product.cpu.abi"] == "arm64-v8a" and dev.machine == "x86_64"
    assert dev.python_runner() is None
    with pytest.raises(
        UserError,
        match=r"built for arm64-v8a \(aarch64\) but .* runs x86_64 programs; use a native runner",
    ):
        dev.install_kit()


def test_devices_command_lists_the_phone_with_its_profile(adb_server, phone):
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(
        cli,
        ["devices", "--adb-server", f"127.0.0.1:{adb_server}", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = {r["serial"]: r for r in json.loads(result.output)}
    assert rows["local"]["profile"] == "desktop-cpu"
    assert (
        rows[phone.serial]["model"] == "SM-S921B" and rows[phone.serial]["profile"] == "galaxy-s24"
    )
    text = CliRunner().invoke(cli, ["devices", "--adb-server", f"127.0.0.1:{adb_server}"]).output
    assert phone.serial in text and "galaxy-s24" in text


def test_core_sets_are_applied_through_the_phones_taskset(adb_server, phone, tmp_path):
    """--cores little and prime+big on the Exynos S24: the runner is pinned by the phone's own
    taskset to cpu0-3 (mask f) and cpu7-9 (mask 380), as read back from its /proc/PID/status."""
    spec = RunSpec(
        model="dummy:tiny-llama",
        quantization="q4f16_1",
        device=f"adb:{phone.serial}",
        tasks=["summ"],
        lengths=[200],
        repeats=1,
        warmup=0,
        max_new_tokens=4,
        docs=1,
        idle_s=0,
        cores=["little", "prime+big"],
    )
    out = run_benchmark(
        spec,
        tmp_path / "run",
        log=lambda *_: None,
        write_reports=False,
        adb_server=f"127.0.0.1:{adb_server}",
    )
    records, _ = load(out.out_dir)
    seen = {
        r.cores_asked: (r.cpu_mask, r.cpu_list, r.threads, r.cpu_clusters, r.placement_mismatch)
        for r in records
    }
    assert seen == {
        "little": ("f", "0-3", 4, ["little"], None),
        "prime+big": ("380", "7-9", 3, ["prime", "big"], None),
    }
    info = json.loads((out.out_dir / "run.json").read_text())
    assert (
        info["topology"]["clusters"]["prime"]["cores"] == "9"
        and "emulated" in info["topology"]["source"]
    )
    with pytest.raises(UserError, match="has no cluster 'huge'"):
        run_benchmark(
            spec.model_copy(update={"cores": ["huge"]}),
            tmp_path / "bad",
            log=lambda *_: None,
            adb_server=f"127.0.0.1:{adb_server}",
        )


def test_a_mask_the_phone_refuses_is_a_one_line_error_before_any_runner(adb_server, phone):
    from harness.devices.placement import Placement

    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    dev.check_pinning(Placement(1, (9,), ("prime",)))  # the X4: taken
    with pytest.raises(
        UserError,
        match=r"refused `taskset 400` .*failed to set pid \d+'s affinity.*pick cores it has online",
    ):
        # no cpu10 on an S24: the phone's taskset says no
        dev.check_pinning(Placement(1, (10,), ()))


def test_devices_lists_the_phones_ten_cores_in_four_clusters(adb_server, phone):
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(
        cli, ["devices", "--adb-server", f"127.0.0.1:{adb_server}"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    cores = lines[
        # each phone is named as --device takes it, with the server asked
        next(i for i, line in enumerate(lines) if line.startswith(f"adb:{phone.serial}@")) + 1
    ].strip()
    assert cores.startswith(
        "10 cores: prime 9 (Cortex-X4, 3.21 GHz), big 7-8 (Cortex-A720, 2.90 GHz), mid 4-6"
    )
    assert cores.endswith(
        "little 0-3 (Cortex-A520, 1.95 GHz); default: prime+big+mid (cpu 4-9), 6 threads"
    )
    listed = json.loads(
        CliRunner()
        .invoke(cli, ["devices", "--adb-server", f"127.0.0.1:{adb_server}", "--json"])
        .output
    )
    mine = next(row for row in listed if row["serial"] == phone.serial)
    assert mine["topology"]["clusters"]["little"] == {
        "cores": "0-3",
        "mask": "f",
        "max_khz": 1950000,
        "part": "Cortex-A520",
    }
    assert "i8mm" in mine["topology"]["features"] and "emulated" in mine["topology"]["source"]


def test_a_large_push_shows_progress_and_arrives_intact(
    adb_server, phone, tmp_path, monkeypatch, capsys
):
    import os
    import re

    from harness import progress
    from harness.devices import adb as adb_mod

    monkeypatch.setattr(adb_mod, "PUSH_PROGRESS_MIN_BYTES", 1_000_000)  # 3 MB counts as large
    monkeypatch.setattr(progress, "EVERY_S", 0)  # a line every 10%, however fast the push
    blob, small = tmp_path / "blob.bin", tmp_path / "small.bin"
    blob.write_bytes(os.urandom(3_000_000))
    small.write_bytes(b"x" * 1000)
    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    remote = "/data/local/tmp/slm-bench/progress-test"
    assert dev.stage({"blob.bin": blob}, remote) == 3_000_000
    assert (phone.root / remote.lstrip("/") / "blob.bin").read_bytes() == blob.read_bytes()
    lines = capsys.readouterr().err.splitlines()
    label = re.escape(f"pushing files to {phone.serial}")
    steps = [
        re.fullmatch(
            rf"{label}: [\d.]+ [kM]B of 3\.0 MB \((\d+)%\), [\d.]+ [kMG]B/s, .* left", line
        )
        for line in lines[:-1]
    ]
    assert [int(m[1]) for m in steps] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert re.fullmatch(rf"{label}: 3\.0 MB in [\d.]+ s \([\d.]+ [kMG]B/s\)", lines[-1])
    assert dev.stage({"small.bin": small}, remote) == 1000  # under the threshold: silent
    assert capsys.readouterr().err == ""
