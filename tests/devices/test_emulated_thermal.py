"""The emulated phone throttles as a phone does (harness/devices/emulated/thermal.py): past the
profile's trip points its clocks read lower and its programs really get that share of the CPU,
with hysteresis; it discharges unless plugged in; and the ARM64 phone answers /proc/stat.

The throttling phone is started here with a fast thermal model (``THERMAL_SPEEDUP`` device
seconds per real second), so that a busy program heats it past the first trip within seconds.
"""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from harness.devices.emulated.adbd import EmulatedDevice, load_profile
from harness.devices.emulated.services import DeviceState
from harness.devices.emulated.thermal import DutyCycle, TripPoints

from .conftest import ADB, adb, wait_online

if ADB is None:
    pytest.skip(
        "the `adb` binary is not installed (apt-get install -y adb)", allow_module_level=True
    )

import adbutils  # noqa: E402

# the S24 profile's battery time constant (five device minutes) is one real second
THERMAL_SPEEDUP = 300.0
X4_MAX = 3_207_000  # galaxy-s24's cpu9, kHz
CUR_FREQ = "/sys/devices/system/cpu/cpu9/cpufreq/scaling_cur_freq"
BIG_ZONE = "/sys/class/thermal/thermal_zone0/temp"  # THERMAL_ZONES[0]
BUSY = "echo $$; (while :; do :; done) & while :; do :; done"  # two busy cores, one process group


def s24(**emulated) -> dict:
    profile = load_profile("galaxy-s24")
    profile["emulated"] = {**profile["emulated"], **emulated}
    return profile


def client(adb_server: int, serial: str):
    return adbutils.AdbClient(host="127.0.0.1", port=adb_server).device(serial)


def read_pid(conn) -> int:
    line = b""
    while not line.endswith(b"\n"):
        line += conn.read_exact(1)
    return int(line)


def read_int(dev, path: str) -> int:
    return int(dev.shell(f"cat {path}"))


def group(pid: int) -> list[psutil.Process]:
    leader = psutil.Process(pid)
    return [leader, *leader.children(recursive=True)]


def cpu_rate(pid: int, seconds: float) -> float:
    """CPU seconds per second that the process group of ``pid`` used over ``seconds``."""

    def spent():
        return sum(sum(p.cpu_times()[:2]) for p in group(pid))

    before, t0 = spent(), time.monotonic()
    time.sleep(seconds)
    return (spent() - before) / (time.monotonic() - t0)


def share(pid: int, seconds: float) -> float:
    """CPU seconds the process group of ``pid`` used per CPU second of a host busy loop (in its
    own session, as the phone's programs are) run beside it: other work on the host slows both
    alike, so that the ratio, unlike a plain rate, shows the phone's own slowdown."""
    control = psutil.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
    try:
        time.sleep(0.2)

        def spent():
            return sum(sum(p.cpu_times()[:2]) for p in group(pid)), sum(control.cpu_times()[:2])

        (phone0, host0), (phone1, host1) = spent(), (time.sleep(seconds), spent())[1]
        return (phone1 - phone0) / (host1 - host0)
    finally:
        control.kill()
        control.wait()


def wait_for(what: str, check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.05)
    return value


def stopped(pid: int) -> bool:
    try:
        return any(p.status() == psutil.STATUS_STOPPED for p in group(pid))
    except psutil.NoSuchProcess:
        return False


# -- trip points and the duty cycle, without adb ---------------------------------------------------


def test_trips_engage_in_turn_and_release_below_the_hysteresis():
    trips = TripPoints(
        {"throttle": [{"temp_c": 54, "scale": 0.45}, {"temp_c": 46, "scale": 0.7}], "release_c": 6}
    )
    assert [trips.update(t) for t in (30, 45.9, 46, 53, 54, 60)] == [1.0, 1.0, 0.7, 0.7, 0.45, 0.45]
    assert [trips.update(t) for t in (48.1, 47.9, 40.1, 39.9, 45)] == [0.45, 0.7, 0.7, 1.0, 1.0]
    assert trips.update(70) == 0.45  # past both at once: both engage
    assert not TripPoints(None) and TripPoints(None).update(99) == 1.0


def test_a_profile_without_the_section_never_throttles(tmp_path):
    bare = load_profile("galaxy-s24")
    del bare["emulated"]
    bare["emulated"] = {"ambient_c": 80}  # very hot, but no trips
    state = DeviceState(bare, tmp_path)
    assert state.duty is None and state.throttle_scale() == 1.0 and state.cur_freq_khz(9) == X4_MAX
    assert DeviceState(load_profile("android-emulator"), tmp_path / "b").throttle_scale() == 1.0


def test_a_hot_phone_stops_its_programs_in_turn_and_leaves_none_stopped(tmp_path):
    """A phone at 80 C ambient is past both trips at once: scale 0.45, its programs cycle."""
    state = DeviceState(s24(ambient_c=80), tmp_path)
    busy, idle = state.popen("while :; do :; done", True), state.popen("exec sleep 60", True)
    try:
        assert state.throttle_scale() == 0.45
        assert state.cur_freq_khz(9) == round(X4_MAX * 0.45) and state.cur_freq_khz(0) == round(
            1_950_000 * 0.45
        )
        state.refresh()
        assert (tmp_path / CUR_FREQ.lstrip("/")).read_text() == f"{round(X4_MAX * 0.45)}\n"
        wait_for("stopped the idle program", lambda: stopped(idle.pid), timeout=5)
        wait_for("continued it", lambda: not stopped(idle.pid), timeout=5)
        rate = cpu_rate(busy.pid, 1.5)
        assert rate < 0.75, rate  # 0.45 of a core, give or take the host's other work
        os.killpg(busy.pid, signal.SIGKILL)
        state.reap(busy)  # reaping continues the others, and forgets the reaped group
        assert busy not in state.processes
    finally:
        state.close()
    assert not stopped(idle.pid) or idle.poll() is not None
    idle.wait(timeout=5)  # close() killed it
    assert state.duty._thread is None


def test_a_forgotten_group_is_continued_and_never_stopped_again():
    scale = [0.0]  # always in the stop phase, but for a moment a period
    duty = DutyCycle(lambda: scale[0], period=0.05)
    a, b = (psutil.Popen(["sleep", "60"], start_new_session=True) for _ in range(2))
    try:
        duty.add(a.pid)
        duty.add(b.pid)
        wait_for("stopped both", lambda: stopped(a.pid) and stopped(b.pid), timeout=5)
        duty.forget(a.pid)
        assert not stopped(a.pid)
        time.sleep(0.3)
        assert not stopped(a.pid) and wait_for("stopped b again", lambda: stopped(b.pid), timeout=5)
        scale[0] = 1.0  # unthrottled: everything continued
        wait_for("continued b", lambda: not stopped(b.pid), timeout=5)
        scale[0] = 0.0
        wait_for("stopped b again", lambda: stopped(b.pid), timeout=5)
    finally:
        duty.close()
        assert not stopped(a.pid) and not stopped(b.pid)
        for p in (a, b):
            p.kill()
            p.wait()


# -- the phone over adb -------------------------------------------------------------------------


@pytest.fixture
def hot_phone(adb_server, tmp_path):
    """A galaxy-s24 whose thermal model stands still until the test speeds it up."""
    device = EmulatedDevice(load_profile("galaxy-s24"), tmp_path / "phone", time_scale=1e-6)
    device.start()
    wait_online(adb_server, device.serial)
    yield device
    adb(adb_server, "disconnect", device.serial)
    device.stop()


def test_a_busy_phone_throttles_really_slows_down_and_recovers(adb_server, hot_phone, monkeypatch):
    dev, thermal = client(adb_server, hot_phone.serial), hot_phone.state.thermal
    idle = dev.shell("echo $$; exec sleep 120", stream=True)
    conn = dev.shell(BUSY, stream=True)
    try:
        idle_pid, pid = read_pid(idle), read_pid(conn)
        unthrottled = share(pid, 1.5)  # no heating yet: the model stands still
        assert read_int(dev, CUR_FREQ) == X4_MAX and read_int(dev, BIG_ZONE) < 46_000
        thermal.time_scale = THERMAL_SPEEDUP
        t0 = time.monotonic()
        wait_for("passed the first trip", lambda: read_int(dev, BIG_ZONE) >= 46_000)
        wait_for("lowered the X4's clock", lambda: read_int(dev, CUR_FREQ) < X4_MAX)
        assert time.monotonic() - t0 < 60
        # Hold the throttle's level while measuring: the control loop's load takes CPU from the
        # phone, which could cool it out of the throttle within the window (a device minute a
        # second).
        trips = hot_phone.state.trips
        monkeypatch.setattr(trips, "update", lambda temp_c: trips.scale)
        throttled = share(pid, 2.0)
        assert throttled < 0.85 * unthrottled, (unthrottled, throttled)
        clocks = {read_int(dev, CUR_FREQ) for _ in range(20) if not time.sleep(0.05)}
        # the trips' levels only
        assert clocks <= {round(X4_MAX * 0.7), round(X4_MAX * 0.45)}, clocks
        assert wait_for("stopped the busy program", lambda: stopped(pid), timeout=5)
        monkeypatch.undo()  # the trips follow the temperature again
    finally:
        conn.close()  # the phone kills the program's group
    wait_for(
        "ended the busy program",
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
    )
    wait_for("recovered the clock", lambda: read_int(dev, CUR_FREQ) == X4_MAX)
    assert read_int(dev, BIG_ZONE) < 40_000  # released 6 C below the first trip
    time.sleep(0.3)
    assert psutil.Process(idle_pid).status() != psutil.STATUS_STOPPED
    idle.close()


def test_the_phone_discharges_unless_plugged_in(adb_server, phone, tmp_path):
    from harness.devices.adb import AdbDevice

    dumpsys = client(adb_server, phone.serial).shell("dumpsys battery")
    assert "status: 3" in dumpsys and "USB powered: false" in dumpsys
    assert (
        client(adb_server, phone.serial).shell("cat /sys/class/power_supply/battery/status")
        == "Discharging"
    )
    assert AdbDevice(phone.serial, f"127.0.0.1:{adb_server}").state().charging is False
    plugged = EmulatedDevice(load_profile("galaxy-s24"), tmp_path / "plugged", charging=True)
    plugged.start()
    try:
        wait_online(adb_server, plugged.serial)
        dev = client(adb_server, plugged.serial)
        dumpsys = dev.shell("dumpsys battery")
        assert "status: 2" in dumpsys and "USB powered: true" in dumpsys
        assert dev.shell("cat /sys/class/power_supply/battery/status") == "Charging"
    finally:
        adb(adb_server, "disconnect", plugged.serial)
        plugged.stop()


# -- the command lines --------------------------------------------------------------------------


def test_thermal_speedup_and_charging_reach_the_phone(monkeypatch):
    from click.testing import CliRunner

    from harness.cli.devices import emulate
    from harness.devices.emulated import adbd
    from harness.errors import UserError

    made = []

    def fake(profile, root, **kw):
        made.append(kw)
        raise UserError("stop here")

    monkeypatch.setattr(adbd, "EmulatedDevice", fake)
    assert adbd.main(["--thermal-speedup", "60", "--charging"]) == 2
    assert adbd.main(["--time-scale", "30"]) == 2
    assert [(m["time_scale"], m["charging"]) for m in made] == [(60.0, True), (30.0, False)]
    result = CliRunner().invoke(emulate, ["--thermal-speedup", "120", "--charging", "--port", "0"])
    assert result.exit_code == 2 and (made[-1]["time_scale"], made[-1]["charging"]) == (120.0, True)
    help_text = CliRunner().invoke(emulate, ["--help"]).output
    assert (
        "--thermal-speedup N" in help_text and "--charging" in help_text and "throttle" in help_text
    )


# -- /proc/stat on the ARM64 phone (its chroot has no procfs) ------------------------------------


@pytest.fixture(scope="module")
def arm_phone(adb_server, tmp_path_factory):
    from harness.kits.userland import arm64_blocker

    blocker = arm64_blocker()
    if blocker:
        pytest.skip(f"no ARM64 emulation here: {blocker}")
    phone = EmulatedDevice(
        load_profile("galaxy-s24"), tmp_path_factory.mktemp("arm-stat"), arch="aarch64"
    )
    phone.start()
    wait_online(adb_server, phone.serial)
    yield client(adb_server, phone.serial)
    adb(adb_server, "disconnect", phone.serial)
    phone.stop()


def test_the_arm64_phone_answers_proc_stat(arm_phone):
    from harness.devices.load import parse_counters

    assert re.search(r"^cpu  \d+", arm_phone.shell("cat /proc/stat"), re.M)
    # really no procfs in the chroot
    assert arm_phone.shell2("ls /proc/stat", v2=True).returncode != 0
    conn = arm_phone.shell("taskset 380 sh -c 'echo $$; exec sleep 30'", stream=True)
    try:
        pid = read_pid(conn)
        both = arm_phone.shell(f"cat /proc/stat /proc/{pid}/stat")
        assert both.startswith("cpu ") and re.search(rf"^{pid} \(.+\) [RS] ", both, re.M), both[
            -300:
        ]
        # AdbDevice.cpu_counters
        harness_form = arm_phone.shell(f"cat /proc/stat /proc/{pid}/stat 2>/dev/null")
        counters = parse_counters(harness_form)
        assert counters is not None and counters.total > 0 and counters.runner is not None
    finally:
        conn.close()
    gone = arm_phone.shell("cat /proc/stat /proc/999999999/stat 2>/dev/null")
    assert parse_counters(gone) is not None and parse_counters(gone).runner is None
