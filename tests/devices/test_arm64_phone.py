"""The emulated ARM64 Galaxy S24: its shell and every program it runs are aarch64 (qemu-user),
no Python is offered, and our TVM bundles reach it through the harness's kit."""

from __future__ import annotations

import json

import pytest

from harness.devices.adb import AdbDevice
from harness.devices.emulated.adbd import load_profile
from harness.errors import UserError
from harness.kits.userland import arm64_blocker
from harness.runners.base import elf_machine

from .conftest import ADB, adb, start_arm_phone

BLOCKER = arm64_blocker()
pytestmark = [
    pytest.mark.skipif(
        ADB is None, reason="Debian's adb is not installed (apt-get install -y adb)"
    ),
    pytest.mark.skipif(BLOCKER is not None, reason=f"no ARM64 emulation here: {BLOCKER}"),
]


@pytest.fixture(scope="module")
def older_phone(adb_server, tmp_path_factory):
    """An S24 whose cores lack i8mm, as a 2019-2021 phone's (Armv8.2-A: sdot, no smmla): its
    programs run on qemu's neoverse-n1."""
    profile = load_profile("galaxy-s24")
    profile["cpu"]["features"] = [f for f in profile["cpu"]["features"] if f != "i8mm"]
    device = start_arm_phone(adb_server, tmp_path_factory.mktemp("older-phone"), profile)
    yield device
    adb(adb_server, "disconnect", device.serial)
    device.stop()


def test_each_phone_says_what_its_cores_execute(adb_server, arm_phone, older_phone):
    s24, older = (AdbDevice(p.serial, f"127.0.0.1:{adb_server}") for p in (arm_phone, older_phone))
    assert "i8mm" in s24.cpu_features() and "sve" not in s24.cpu_features()
    assert "asimddp" in older.cpu_features() and "i8mm" not in older.cpu_features()
    assert [d.run("getprop ro.slm_bench.qemu_cpu")[1].strip() for d in (s24, older)] == [
        "max,sve=off",
        "neoverse-n1",
    ]


def test_the_phone_runs_aarch64_programs_and_offers_no_python(adb_server, arm_phone):
    dev = AdbDevice(arm_phone.serial, f"127.0.0.1:{adb_server}")
    info = dev.info()
    assert (info.machine, info.emulated, info.abi) == ("aarch64", True, "arm64-v8a")
    assert elf_machine(arm_phone.root / "system/bin/busybox") == "aarch64"  # the shell itself
    code, out, _ = dev.run("uname -m; echo $0; getprop ro.product.model | grep -c SM-S921B")
    assert code == 0 and out.split() == ["aarch64", "/system/bin/sh", "1"]
    assert dev.run("command -v python3 || command -v python")[0] != 0
    assert dev.python_runner() == "kit"  # a stock ARM64 phone: the harness brings its own
    with pytest.raises(UserError, match="no Python runner configured"):
        dev.runner_python()


def run_records(out_dir) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "records.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset,phone,target,kernels",
    [
        ("q0f32", "arm_phone", "arm64-linux-i8mm", "float"),
        ("q4f16_1a8", "arm_phone", "arm64-linux-i8mm", "neon-i8mm"),
        ("q4f16_1a8", "older_phone", "arm64-linux", "neon-dot"),
    ],
)
def test_the_tvm_kit_runs_our_bundle_as_arm64_code_with_the_hosts_tokens(
    adb_server, request, tmp_path, preset, phone, target, kernels
):
    """The ARM64 build's greedy tokens equal the host's exactly (16 of them): q0f32, and
    q4f16_1a8, whose int8 matmuls are smmla (prefill) and sdot (decode) on the S24, sdot alone
    on a phone without i8mm, and vpmaddubsw or vpdpbusd on x86: the same integers. The build is
    picked from each phone's /proc/cpuinfo, and its records say which."""
    from harness.benchmark import run_benchmark
    from harness.results.schema import RunSpec

    arm_phone = request.getfixturevalue(phone)
    activations = "int8" if preset.endswith("a8") else "float32"

    # pinned to the phone's X4 and A720 2.9 GHz cores (cpu7-9) through its own ARM64 taskset
    spec = RunSpec(
        model="dummy:tiny-llama",
        quantization=preset,
        device=f"adb:{arm_phone.serial}",
        idle_s=0,
        tasks=["summ"],
        lengths=[200],
        docs=1,
        repeats=1,
        warmup=0,
        max_new_tokens=16,
        cores=["prime+big"],
    )
    quiet = dict(write_reports=False, log=lambda *_: None, adb_server=f"127.0.0.1:{adb_server}")
    arm = run_benchmark(spec, tmp_path / "arm", **quiet)
    host = run_benchmark(
        spec.model_copy(update={"device": "local", "cores": None}), tmp_path / "host", **quiet
    )
    assert arm.measured == host.measured == 1
    (on_arm,), (on_host,) = run_records(tmp_path / "arm"), run_records(tmp_path / "host")
    assert on_arm["device"]["machine"] == "aarch64" and on_arm["device"]["emulated"] is True
    assert on_arm["target"] == target and on_arm["runner"] == "python"
    # the host's own integer ISA where the phone's is one
    assert on_arm["kernels"] == kernels and (on_host["kernels"] == "float") == (kernels == "float")
    assert on_arm["format"] == on_host["format"] == preset and on_arm["activations"] == activations
    assert on_host["device"]["machine"] == "x86_64" and on_host["device"]["emulated"] is False
    assert len(on_arm["output_ids"]) == 16 and on_arm["output_ids"] == on_host["output_ids"]
    # both ran their parallel loops on the model library's own launcher (fork_join.cc)
    assert on_arm["launcher"] == on_host["launcher"] == "fork-join"
    # read back from the kit's runner: TVM's pool on the ARM side and its /proc/PID/status
    assert (
        on_arm["threads"],
        on_arm["cpu_mask"],
        on_arm["cpu_list"],
        on_arm["placement_mismatch"],
    ) == (3, "380", "7-9", None)
    run_info = json.loads((tmp_path / "arm" / "run.json").read_text())
    assert run_info["deploy"]["bytes_pushed"] > 0
    assert run_info["bundle"]["kernels"] == kernels
    if kernels == "neon-i8mm":
        assert "smmla" in run_info["bundle"]["kernels_detail"]
    if kernels == "neon-dot":
        assert "sdot" in run_info["bundle"]["kernels_detail"]
    # the kit and the bundle are on the phone now, checked by sha256: nothing is pushed again
    again = run_benchmark(spec, tmp_path / "arm-again", **quiet)
    assert (
        again.measured == 1
        and json.loads((tmp_path / "arm-again" / "run.json").read_text())["deploy"]["bytes_pushed"]
        == 0
    )


def small_kit(tmp_path, contents: dict[str, bytes]) -> dict:
    """A kit of one tiny layer per entry, in the form harness.kits.tvm_kit.load_kit returns."""
    from harness.cache import file_sha256
    from harness.kits.tvm_kit import _write_tar

    paths = {}
    for name, data in contents.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "hello.txt").write_bytes(data)
        paths[name] = tmp_path / f"{name}.tar"
        _write_tar(paths[name], tmp_path / name)
    return {
        "layers": {n: file_sha256(p) for n, p in paths.items()},
        "paths": {n: str(p) for n, p in paths.items()},
    }


def test_kit_layers_are_checked_by_sha256_and_never_trusted_half_installed(
    adb_server, arm_phone, tmp_path, monkeypatch
):
    import harness.kits.tvm_kit as tvm_kit

    kit = small_kit(tmp_path, {"python": b"py", "site": b"site", "app": b"app v1"})
    monkeypatch.setattr(tvm_kit, "build_kit", lambda log=print: tmp_path)
    monkeypatch.setattr(tvm_kit, "load_kit", lambda folder: kit)
    dev = AdbDevice(arm_phone.serial, f"127.0.0.1:{adb_server}")
    dev.clean()
    assert dev.install_kit() == sum((tmp_path / f"{n}.tar").stat().st_size for n in kit["layers"])
    app = arm_phone.root / "data/local/tmp/slm-bench/kit/app"
    assert (app / "hello.txt").read_text() == "app v1" and (
        app / ".sha256"
    ).read_text().strip() == kit["layers"]["app"]
    assert dev.install_kit() == 0  # every layer's marker matches: nothing pushed
    (app / ".sha256").unlink()  # as if the unpack had been interrupted
    assert dev.install_kit() == (tmp_path / "app.tar").stat().st_size  # only that layer again
    monkeypatch.setattr(AdbDevice, "free_bytes", lambda self: 10)
    (app / ".sha256").unlink()
    with pytest.raises(UserError, match=r"has 0 MB free .* the TVM kit needs .* devices clean"):
        dev.install_kit()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["q4f16_1", "q4f16_1a8"])
def test_smollm2_q4_on_the_arm64_phone_agrees_with_the_host(
    adb_server, arm_phone, tmp_path, preset
):
    """The whole path with real weights: one SmolLM2-135M request (L=200, 4 tokens) compiled for
    the S24 (arm64-linux-i8mm: q4f16_1a8's prefill on smmla) and run by the kit as aarch64 code.
    Its greedy tokens are the host's; where the two builds' rounding differs, teacher-forced
    next-token agreement must still be >= 90%. (About 6 minutes each: qemu computes floating
    point in software.)"""
    from harness.benchmark import run_benchmark
    from harness.results.schema import RunSpec

    spec = RunSpec(
        model="smollm2-135m-instruct",
        quantization=preset,
        device=f"adb:{arm_phone.serial}",
        idle_s=0,
        tasks=["summ"],
        lengths=[200],
        docs=1,
        repeats=1,
        warmup=0,
        max_new_tokens=4,
    )
    quiet = dict(write_reports=False, log=lambda *_: None, adb_server=f"127.0.0.1:{adb_server}")
    run_benchmark(spec, tmp_path / "arm", **quiet)
    run_benchmark(spec.model_copy(update={"device": "local"}), tmp_path / "host", **quiet)
    (on_arm,), (on_host,) = run_records(tmp_path / "arm"), run_records(tmp_path / "host")
    assert on_arm["target"] == "arm64-linux-i8mm" and on_arm["format"] == preset
    assert on_arm["status"] == "ok" and (
        on_arm["device"]["machine"],
        on_arm["device"]["emulated"],
    ) == ("aarch64", True)
    # the same prompt, tokenized on the phone
    assert on_arm["input_tokens"] == on_host["input_tokens"]
    if on_arm["output_ids"] != on_host["output_ids"]:
        assert teacher_forced_agreement(adb_server, arm_phone, tmp_path, on_host) >= 0.9
    else:
        assert on_arm["output_text"] == on_host["output_text"]


def teacher_forced_agreement(adb_server, arm_phone, tmp_path, host_record: dict) -> float:
    """Feed the host's greedy tokens to the phone's runner ("follow") and count how often the
    phone's greedy choice is the host's next token."""
    from harness.prompts.suite import load_suite

    dev = AdbDevice(arm_phone.serial, f"127.0.0.1:{adb_server}")
    bundle = next(
        (arm_phone.root / "data/local/tmp/slm-bench/bundles").glob(
            f"smollm2-135m-instruct-{host_record['format']}-arm64-linux-i8mm-*"
        )
    )
    prompt = next(p for p in load_suite() if p.id == host_record["prompt_id"])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(prompt.model_dump_json() + "\n")
    remote = "/data/local/tmp/slm-bench/bundles/" + bundle.name
    runner = dev.start_runner(
        remote, prompts, {}, len(host_record["output_ids"]), "speed", tmp_path / "runner.log"
    )
    try:
        choices = runner.request(
            {"op": "follow", "prompt_id": prompt.id, "tokens": host_record["output_ids"]}
        )["choices"]
    finally:
        runner.close()
    agreed = sum(a == b for a, b in zip(choices, host_record["output_ids"], strict=True))
    return agreed / len(choices)
