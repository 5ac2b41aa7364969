"""slm-bench profile on a phone: the runner's ``profile`` op, what the host adds to its answer,
and a whole profile on the emulated ARM64 Galaxy S24 (its ARM64 code under qemu-user)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.profiling.schema import OVERHEAD, GroupStat, KernelStat, PhaseProfile
from tests.devices.conftest import (  # noqa: F401 (fixtures)
    ADB,
    adb_server,
    arm_phone,
    phone,
)

REPO = Path(__file__).resolve().parents[2]
needs_adb = pytest.mark.skipif(
    ADB is None, reason="Debian's adb is not installed (apt-get install -y adb)"
)


def _cli(*args: str):
    from harness.cli import cli

    return CliRunner().invoke(cli, ["profile", "--model", "dummy:tiny-llama", *args])


def _refused(*args: str) -> str:
    """The one-line error (a UserError, which `slm-bench` prints as `error: ...`)."""
    from harness.errors import UserError

    result = _cli(*args)
    assert result.exit_code != 0 and isinstance(result.exception, UserError), result.output
    assert "\n" not in str(result.exception)
    return str(result.exception)


# -- the runner's profile op: every bad command is one error line, and the runner reads on ------


@pytest.fixture(scope="module")
def served_runner(tmp_path_factory):
    """harness.runner --serve on the desktop, on the tiny Llama's bundle (the desktop profile's,
    cached), as a phone runs it: TVM's runtime library only."""
    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.prompts.suite import load_suite, select
    from harness.quantization import get_preset

    bundle = compile_model(
        resolve_model("dummy:tiny-llama", log=lambda *_: None),
        get_preset("q4f16_1"),
        "llvm",
        log=lambda *_: None,
    )
    folder = tmp_path_factory.mktemp("served")
    prompts = select(load_suite(), ["summ"], [200], 1)
    (folder / "prompts.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in prompts))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.runner", str(bundle), str(folder / "prompts.jsonl")]
        + ["--max-new-tokens", "4", "--serve"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TVM_USE_RUNTIME_LIB": "1"},
    )

    def ask(line: str) -> dict:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    yield ask, prompts[0].id
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.mark.parametrize(
    "command,says",
    [
        ("not json", "not a JSON command"),
        ("[1, 2]", "a command is a JSON object"),
        ('{"op": "nope"}', "unknown op 'nope'; the ops are run, follow, describe, profile"),
        ('{"op": "profile"}', "profile needs prompt_ids"),
        ('{"op": "profile", "prompt_ids": ["d99"]}', "unknown prompt ids ['d99']"),
        ('{"op": "profile", "prompt_ids": [ID], "decode_steps": 0}', "decode_steps and rounds"),
        (
            '{"op": "profile", "prompt_ids": [ID], "decode_steps": 2, "calibration": "/nowhere"}',
            "no calibration library at '/nowhere'",
        ),
        (  # 2 x 50 steps do not fit a cache sized for --max-new-tokens 4 (and a relative
            # calibration path is in the bundle's folder: any file there passes that check)
            '{"op": "profile", "prompt_ids": [ID], "decode_steps": 50,'
            ' "calibration": "config.json"}',
            "start it with --max-new-tokens 102 or more",
        ),
    ],
)
def test_a_bad_profile_command_is_one_error_line_and_the_runner_reads_on(
    served_runner, command, says
):
    ask, prompt_id = served_runner
    command = command.replace("ID", json.dumps(prompt_id))
    reply = ask(command)
    assert list(reply) == ["error"] and says in reply["error"], reply
    assert "pid" in ask('{"op": "describe"}')  # still serving


# -- what the host adds: the phone's ceilings, or none --------------------------------------


def _phase() -> PhaseProfile:
    linear = dict(calls=4, time_s=0.002, bytes=20e6, ops=40e6)
    return PhaseProfile(
        L=200,
        phase="decode",
        input_tokens=200,
        steps=2,
        wall_s=0.004,
        profiled_wall_s=0.005,
        kernel_s=0.002,
        overhead_s=0.002,
        calls=30,
        kernels=[KernelStat(name="gemv_q4_128x64", group="linear", gbps=10.0, **linear)],
        groups=[
            GroupStat(group="linear", share=0.5, gbps=10.0, gops=20.0, **linear),
            GroupStat(group=OVERHEAD, calls=26, time_s=0.002, share=0.5),
        ],
    )


def test_an_emulated_phone_gets_shares_and_no_rates():
    from harness.devices.profiles import get_profile
    from harness.profiling.phone import device_ceilings, rate

    ceilings = device_ceilings(get_profile("galaxy-s24"), emulated=True)
    assert ceilings.bandwidth_gbps is None and ceilings.fp32_gflops is None
    assert "qemu-user" in ceilings.bandwidth_source
    phase = _phase()
    rate(phase, ceilings, emulated=True)
    for stat in [*phase.kernels, *phase.groups]:
        assert (stat.gbps, stat.gops, stat.bandwidth_pct, stat.compute_pct) == (None,) * 4
        assert stat.roofline_pct is None
    assert [g.share for g in phase.groups] == [0.5, 0.5]


def test_a_real_phone_is_rated_against_its_profiles_bandwidth_only():
    from harness.devices.profiles import get_profile
    from harness.profiling.phone import device_ceilings, rate

    ceilings = device_ceilings(get_profile("galaxy-s24"), emulated=False)
    assert ceilings.bandwidth_gbps == 68.3 and "derived, not measured" in ceilings.bandwidth_source
    assert ceilings.fp32_gflops is None and "%peak stays empty" in ceilings.compute_source
    phase = _phase()
    rate(phase, ceilings, emulated=False)
    linear = phase.groups[0]
    assert linear.gbps == pytest.approx(10.0) and linear.gops == pytest.approx(20.0)
    assert linear.bandwidth_pct == pytest.approx(100 * 10 / 68.3)
    assert linear.compute_pct is None and linear.roofline_pct == linear.bandwidth_pct
    assert phase.groups[1].gbps is None  # the overhead is a share, never a rate
    unknown = device_ceilings(get_profile("android-emulator"), emulated=False)
    assert (
        unknown.bandwidth_gbps is None and "gives no memory bandwidth" in unknown.bandwidth_source
    )


# -- bad input on the command line: one line naming the problem and the fix ------------------


def test_a_phone_target_on_the_desktop_is_refused_in_one_line():
    error = _refused("--target", "arm64-linux")
    assert "desktop profile runs llvm (or llvm-avx2) bundles" in error
    assert "--device adb:SERIAL" in error


@needs_adb
def test_a_phone_that_is_not_attached_is_refused_in_one_line(adb_server):  # noqa: F811
    error = _refused("--device", "adb:127.0.0.1:9", "--adb-server", f"127.0.0.1:{adb_server}")
    assert "device 127.0.0.1:9 is not attached" in error and "adb connect" in error


# -- whole profiles on the emulated S24s ----------------------------------------------------


def _profile_on(serial: str, adb_port: int, out: Path):
    return _cli(
        "--device",
        f"adb:{serial}",
        "--adb-server",
        f"127.0.0.1:{adb_port}",
        "--lengths",
        "200",
        "--decode-steps",
        "2",
        "--rounds",
        "1",
        "--cores",
        "prime",  # the X4 alone: one thread, as qemu on a 2-core CI machine runs best
        "--out",
        str(out),
    )


@needs_adb
def test_the_emulated_x86_phone_profiles_through_the_hosts_python(adb_server, phone, tmp_path):  # noqa: F811
    """The x86_64 S24 runs the runner with the host's Python in its sandbox, whose paths it
    rewrites in command lines only: the calibration library is found beside the bundle."""
    result = _profile_on(phone.serial, adb_server, tmp_path / "prof")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "prof" / "profile.json").read_text())
    assert (data["device"], data["target"], data["emulated"]) == (
        f"adb:{phone.serial}",
        "llvm",
        True,
    )
    assert "x86_64" in data["machine"] and data["threads"] == 1
    assert all(g["gbps"] is None for p in data["phases"] for g in p["groups"])


def test_the_emulated_arm64_phone_profiles_its_own_bundle(adb_server, arm_phone, tmp_path):  # noqa: F811
    """The kit's runner on the S24 (qemu-user) profiles the arm64-linux-i8mm bundle: groups add
    up to the measured phases, the check line is there, and no rate is claimed."""
    out = tmp_path / "prof"
    result = _profile_on(arm_phone.serial, adb_server, out)
    assert result.exit_code == 0, result.output
    assert result.output.count("check: kernels") == 2
    assert "memory view skipped" in result.output and "qemu-user" in result.output
    data = json.loads((out / "profile.json").read_text())
    assert data["device"] == f"adb:{arm_phone.serial}" and data["emulated"] is True
    assert data["target"] == "arm64-linux-i8mm" and data["kernels"] == "float"
    assert "aarch64" in data["machine"] and "emulated" in data["machine"]
    assert data["threads"] == 1
    assert [p["phase"] for p in data["phases"]] == ["prefill", "decode"]
    for p in data["phases"]:
        assert sum(g["time_s"] for g in p["groups"]) == pytest.approx(p["wall_s"], rel=1e-9)
        assert sum(g["share"] for g in p["groups"]) == pytest.approx(1.0)
        assert p["groups"][-1]["group"] == OVERHEAD and p["calls"] > 0 and p["kernel_s"] > 0
        assert p["expected_overhead_s"] > 0  # the dispatch cost the ARM calibration measured
        for stat in [*p["groups"], *p["kernels"]]:
            rates = ("gbps", "gops", "bandwidth_pct", "compute_pct", "roofline_pct")
            assert [stat[r] for r in rates] == [None] * 5, stat
    assert "linear" in {g["group"] for g in data["phases"][0]["groups"]}
