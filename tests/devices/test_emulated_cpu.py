"""The emulated phone's CPU (harness/devices/emulated/cpu.py) against the real adb server: the
profile's cores in /proc/cpuinfo and /sys/devices/system/cpu, a toybox-style taskset that pins
phone cores onto host CPUs, and /proc/PID/status that shows the phone cores a process may use.

The x86_64 Galaxy S24 comes from conftest's ``phone``; the ARM64 one (qemu-user, root) is started
here and skipped where ARM64 programs cannot run.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from harness.devices.topology import build_topology, parse_cpuinfo

from .conftest import ADB, TIME_SCALE, adb, wait_online

if ADB is None:
    pytest.skip(
        "the `adb` binary is not installed (apt-get install -y adb)", allow_module_level=True
    )

import adbutils  # noqa: E402

from harness.devices.emulated.adbd import EmulatedDevice, load_profile  # noqa: E402
from harness.devices.emulated.services import DeviceState  # noqa: E402

HOSTS = sorted(os.sched_getaffinity(0))  # what the in-process adbd maps phone cores onto
EXYNOS = {"prime": [9], "big": [7, 8], "mid": [4, 5, 6], "little": [0, 1, 2, 3]}
CPU = "/sys/devices/system/cpu"


@pytest.fixture(scope="module")
def device(adb_server, phone):
    return adbutils.AdbClient(host="127.0.0.1", port=adb_server).device(phone.serial)


def host_of(core: int) -> int:
    return HOSTS[core % len(HOSTS)]


def check_cpuinfo(text: str) -> None:
    info = parse_cpuinfo(text)
    assert sorted(info) == list(range(10))
    assert [info[i]["cpu part"] for i in (0, 4, 9)] == ["0xd80", "0xd81", "0xd82"]  # A520, A720, X4
    assert info[0]["cpu implementer"] == "0x41" and info[0]["bogomips"] == "52.00"
    assert {"asimddp", "i8mm"} <= set(info[9]["features"].split())


def test_cpuinfo_shows_the_profiles_ten_cores(device):
    text = device.shell("cat /proc/cpuinfo")
    check_cpuinfo(text)
    # the sandboxed file, through sh
    assert device.shell("grep -c '^processor' /proc/cpuinfo") == "10"


def test_topology_read_over_adb_is_the_exynos_2400(device):
    freqs = device.shell(f"cat {CPU}/cpu*/cpufreq/cpuinfo_max_freq").split()  # cpu0..cpu9 in order
    max_khz = {i: int(f) for i, f in enumerate(freqs)}
    topology = build_topology(
        device.shell(f"cat {CPU}/possible"),
        device.shell(f"cat {CPU}/online"),
        device.shell("cat /proc/cpuinfo"),
        max_khz,
    )
    assert topology.clusters == EXYNOS
    assert device.shell(f"cat {CPU}/present {CPU}/cpu9/online").split() == ["0-9", "1"]
    cur = device.shell(f"cat {CPU}/cpu*/cpufreq/scaling_cur_freq").split()
    assert cur == freqs  # no throttling yet: every core at its maximum


def test_the_harness_reads_the_emulated_topology_and_its_mapping(adb_server, phone):
    from harness.devices.adb import AdbDevice

    dev = AdbDevice(phone.serial, f"127.0.0.1:{adb_server}")
    topology = dev.topology()
    assert topology.clusters == EXYNOS
    cpu_map = ",".join(f"{i}:{host_of(i)}" for i in range(10))
    assert cpu_map in topology.source and dev.props["ro.slm_bench.cpu_map"] == cpu_map
    assert dev.cur_freqs()[9] == 3207000
    assert f"hosts[i mod {len(HOSTS)}]" in phone.state.cpu_emulation()


def test_taskset_pins_to_the_mapped_host_cpus_and_reports_the_phone_mask(device):
    out = device.shell("taskset 380 sh -c 'taskset -p $$'")
    assert re.fullmatch(r"pid \d+'s current affinity mask: 380", out), out
    assert device.shell("taskset 0x200 sh -c 'taskset -p $$'").endswith(": 200")  # 0x is taken too
    # the x86_64 phone's own /proc is the host's: the pinned shell really runs on core 9's host CPU
    host = device.shell("taskset 200 sh -c 'grep Cpus_allowed_list /proc/$$/status'")
    assert host == f"Cpus_allowed_list:\t{host_of(9)}"
    changed = device.shell("sleep 5 & taskset -p f $!; taskset -p $!; kill $!").splitlines()
    assert [line.split(": ")[1] for line in changed] == ["3ff", "f", "f"]  # unpinned: every core
    assert "current affinity mask: 3ff" in changed[0] and "new affinity mask: f" in changed[1]


def test_proc_status_shows_the_phone_cores_of_a_pinned_program(device, phone):
    conn = device.shell("taskset 380 sh -c 'echo $$; exec sleep 30'", stream=True)
    try:
        line = b""
        while not line.endswith(b"\n"):
            line += conn.read_exact(1)
        pid = int(line)
        status = device.shell(f"cat /proc/{pid}/status")
        assert "Cpus_allowed:\t380\n" in status + "\n" and "Cpus_allowed_list:\t7-9" in status
        assert re.search(r"^Threads:\t1$", status, re.M) and re.search(
            rf"^Pid:\t{pid}$", status, re.M
        )
        # as AdbDevice.process_status asks for it
        harness_form = device.shell2(f"cat /proc/{pid}/status 2>/dev/null", v2=True)
        assert "Cpus_allowed_list:\t7-9" in harness_form.stdout
    finally:
        conn.close()
    deadline = time.monotonic() + 10
    # closing the stream kills it
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    device.shell("true")  # a command refreshes the phone, which drops records of ended programs
    assert str(pid) not in os.listdir(phone.root / ".emulated/affinity")
    missing = device.shell2("cat /proc/999999999/status", v2=True)
    assert missing.returncode == 1 and "No such file" in missing.stderr


INVALID = "failed to set pid {pid}'s affinity: Invalid argument"


@pytest.mark.parametrize(
    "mask,message", [("400", INVALID), ("0", INVALID), ("zz", "bad mask 'zz'")]
)
def test_bad_masks_are_refused_as_toybox_does(device, mask, message):
    result = device.shell2(f"taskset {mask} true", v2=True)
    assert result.returncode == 1 and result.stdout == ""
    err = result.stderr.strip()
    pid = re.search(r"pid (\d+)", err)[1] if "{pid}" in message else ""
    assert err == "taskset: " + message.format(pid=pid), err
    # the kernel keeps cores 0-9 of it
    assert device.shell2("taskset 7ff true", v2=True).returncode == 0
    absent = device.shell2("taskset -p 999999999", v2=True)
    assert absent.returncode == 1 and "No such process" in absent.stderr


def test_a_profile_without_cpu_is_as_before(tmp_path):
    state = DeviceState(load_profile("android-emulator"), tmp_path, time_scale=TIME_SCALE)
    assert state.cpu is None and state.cpu_emulation() is None
    assert "ro.slm_bench.cpu_map" not in state.props
    assert not (tmp_path / ".emulated/bin/taskset").exists()
    command = f"cat /proc/cpuinfo {CPU}/online"
    assert state.rewrite(command) == command  # the host's files, as before
    assert state.builtin("cat /proc/cpuinfo") is None
    assert state.builtin(f"cat /proc/{os.getpid()}/status") is None


# -- the ARM64 phone: busybox's taskset applet in the chroot, /proc/PID/status from the host ------


@pytest.fixture(scope="module")
def arm_device(adb_server, tmp_path_factory):
    from harness.kits.userland import arm64_blocker

    blocker = arm64_blocker()
    if blocker:
        pytest.skip(f"no ARM64 emulation here: {blocker}")
    root = tmp_path_factory.mktemp("arm-cpu")
    phone = EmulatedDevice(load_profile("galaxy-s24"), root, time_scale=TIME_SCALE, arch="aarch64")
    phone.start()
    wait_online(adb_server, phone.serial)
    yield adbutils.AdbClient(host="127.0.0.1", port=adb_server).device(phone.serial)
    adb(adb_server, "disconnect", phone.serial)
    phone.stop()


def test_the_arm64_phone_pins_and_shows_the_cpu(arm_device):
    check_cpuinfo(arm_device.shell("cat /proc/cpuinfo"))
    # the S24 lists i8mm, so its programs run on qemu's max without SVE, and its cpuinfo shows
    # only what that model executes: i8mm, no SVE
    features = parse_cpuinfo(arm_device.shell("cat /proc/cpuinfo"))[0]["features"].split()
    assert "i8mm" in features and "sve" not in features and "sve2" not in features
    assert arm_device.shell("getprop ro.slm_bench.qemu_cpu") == "max,sve=off"
    assert arm_device.shell("grep -c '^processor' /proc/cpuinfo") == "10"  # inside the chroot
    # busybox's ash runs its own applets before PATH: the phone's script must still be the one found
    assert arm_device.shell("type taskset") == "taskset is /.emulated/bin/taskset"
    out = arm_device.shell("uname -m; taskset 380 sh -c 'taskset -p $$'").splitlines()
    assert out[0] == "aarch64" and re.fullmatch(r"pid \d+'s current affinity mask: 380", out[1]), (
        out
    )
    conn = arm_device.shell("taskset 380 sh -c 'echo $$; exec sleep 30'", stream=True)
    try:
        line = b""
        while not line.endswith(b"\n"):
            line += conn.read_exact(1)
        # no procfs in the chroot: adbd answers
        status = arm_device.shell(f"cat /proc/{int(line)}/status")
        assert "Cpus_allowed:\t380" in status and "Cpus_allowed_list:\t7-9" in status
    finally:
        conn.close()
    bad = arm_device.shell2("taskset zz true", v2=True)
    assert (bad.returncode, bad.stderr.strip()) == (1, "taskset: bad mask 'zz'")
