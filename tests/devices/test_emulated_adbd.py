"""The emulated adbd against the real adb server (Debian's ``adb``) and adbutils.

Each module run starts its own adb server on a free port (never the default 5037) and its own
emulated Galaxy S24 on another free loopback port, then connects them with ``adb connect``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ADB = shutil.which("adb")
if ADB is None:
    pytest.skip(
        "the `adb` binary is not installed (apt-get install -y adb)", allow_module_level=True
    )

import adbutils  # noqa: E402

from harness.devices.emulated.adbd import EmulatedDevice, load_profile  # noqa: E402,F401

from .conftest import TIME_SCALE, adb, free_port, wait_online  # noqa: E402,F401

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def device(adb_server, phone):
    return adbutils.AdbClient(host="127.0.0.1", port=adb_server).device(phone.serial)


def battery_temp(device) -> int:
    line = next(
        entry
        for entry in device.shell("dumpsys battery").splitlines()
        if entry.strip().startswith("temperature:")
    )
    return int(line.split(":")[1])


def test_listed_as_a_device_with_the_profile_model(adb_server, phone):
    out = adb(adb_server, "devices", "-l").stdout.decode()
    line = next(entry for entry in out.splitlines() if entry.startswith(phone.serial))
    assert line.split()[1] == "device" and "model:SM_S921B" in line and "product:e1sxxx" in line


def test_getprop(device):
    assert device.shell("getprop ro.product.model") == "SM-S921B"
    assert "[ro.product.brand]: [samsung]" in device.shell("getprop").splitlines()
    # the PATH script, through sh
    assert device.shell("getprop ro.build.version.sdk | tr -d x") == "34"
    assert "shell_v2" in device.get_features().split(",")


def test_shell_v2_exit_codes_and_stderr(adb_server, phone, device):
    assert device.shell2("exit 3", v2=True).returncode == 3
    result = device.shell2("echo out; echo err >&2; exit 1", v2=True)
    assert (result.returncode, result.stdout.strip(), result.stderr.strip()) == (1, "out", "err")
    assert adb(adb_server, "-s", phone.serial, "shell", "exit 3").returncode == 3
    real = adb(adb_server, "-s", phone.serial, "shell", "echo out; echo err >&2")
    assert (real.returncode, real.stdout, real.stderr) == (0, b"out\n", b"err\n")


def test_stdin_reaches_a_running_process(adb_server, phone, device):
    data = bytes(range(256)) * 64
    # shell v2: stdin, then close-stdin
    real = adb(adb_server, "-s", phone.serial, "shell", "cat", input=data)
    assert real.returncode == 0 and real.stdout == data
    # raw shell: a long-running process echoes what it reads
    conn = device.shell("cat", stream=True)
    try:
        for line in (b"ping\n", b"pong\n"):
            conn.conn.send(line)
            assert conn.read_exact(len(line)) == line
    finally:
        conn.close()


def test_paths_rewritten_into_the_sandbox(phone, device):
    device.shell("echo hi > /data/local/tmp/hello.txt && mkdir -p /sdcard/models")
    assert (phone.root / "data/local/tmp/hello.txt").read_text() == "hi\n"
    assert (phone.root / "sdcard/models").is_dir()
    device.shell("cp /data/local/tmp/hello.txt /sdcard/models/")
    assert device.shell("cat /storage/emulated/0/models/hello.txt") == "hi"  # the alias of /sdcard
    # whole path words only
    assert device.shell("echo /database /data") == f"/database {phone.root}/data"


def test_sync_push_pull_roundtrip_1mb(device, phone, tmp_path):
    payload = os.urandom(1 << 20)
    src, back = tmp_path / "random.bin", tmp_path / "back.bin"
    src.write_bytes(payload)
    assert device.sync.push(src, "/data/local/tmp/random.bin") == len(payload)
    assert (phone.root / "data/local/tmp/random.bin").read_bytes() == payload
    info = device.sync.stat("/data/local/tmp/random.bin")
    assert info.size == len(payload)
    assert "random.bin" in [f.path for f in device.sync.list("/data/local/tmp")]
    assert device.sync.pull("/data/local/tmp/random.bin", back) == len(payload)
    assert back.read_bytes() == payload
    assert device.shell("wc -c < /data/local/tmp/random.bin") == str(len(payload))
    with pytest.raises(adbutils.AdbError):
        device.sync.read_bytes("/data/local/tmp/missing.bin")


def test_real_adb_push_pull(adb_server, phone, tmp_path):
    payload = os.urandom(3 * (1 << 20) + 17)
    src, back = tmp_path / "weights.bin", tmp_path / "back.bin"
    src.write_bytes(payload)
    pushed = adb(
        adb_server, "-s", phone.serial, "push", str(src), "/sdcard/Download/nested/weights.bin"
    )
    assert pushed.returncode == 0, pushed.stderr.decode()
    pulled = adb(
        adb_server, "-s", phone.serial, "pull", "/sdcard/Download/nested/weights.bin", str(back)
    )
    assert pulled.returncode == 0, pulled.stderr.decode()
    assert back.read_bytes() == payload
    listing = adb(adb_server, "-s", phone.serial, "ls", "/sdcard/Download/nested").stdout.decode()
    assert "weights.bin" in listing
    whole = adb(
        adb_server, "-s", phone.serial, "pull", "/sdcard/Download/nested", str(tmp_path / "dir")
    )
    assert whole.returncode == 0 and (tmp_path / "dir/weights.bin").read_bytes() == payload
    missing = adb(adb_server, "-s", phone.serial, "pull", "/sdcard/nope.bin", str(tmp_path / "x"))
    assert missing.returncode != 0


def test_meminfo(device):
    meminfo = dict(line.split(":", 1) for line in device.shell("cat /proc/meminfo").splitlines())
    total_kb = int(meminfo["MemTotal"].split()[0])
    assert total_kb * 1024 == 8_000_000_000
    assert 0 < int(meminfo["MemAvailable"].split()[0]) < total_kb


def test_thermal_zones(device):
    types = device.shell("cat /sys/class/thermal/thermal_zone*/type").split()
    temps = [int(t) for t in device.shell("cat /sys/class/thermal/thermal_zone*/temp").split()]
    assert "battery" in types and len(types) == len(temps)
    assert all(15_000 < t < 90_000 for t in temps)  # millidegrees
    looped = device.shell("for z in /sys/class/thermal/thermal_zone*; do cat $z/type; done").split()
    assert looped == types


def run_for(device, command: str, seconds: float) -> float:
    """Run a shell command in the background for ``seconds``; the battery temperature then."""
    load = threading.Thread(target=device.shell, args=(command,))
    load.start()
    time.sleep(seconds)
    temp = battery_temp(device)
    load.join()
    return temp


def test_battery_heats_under_load_and_cools_at_rest(device):
    """Heat follows CPU time, not running commands: an idle program (a runner server waiting
    for its next request) leaves the phone free to cool, a busy loop heats it."""
    dumpsys = device.shell("dumpsys battery")
    assert "level:" in dumpsys and "scale: 100" in dumpsys
    time.sleep(1.0)
    before = battery_temp(device)
    idle = run_for(device, "sleep 1.2", 0.9)  # 54 device seconds with an idle program
    hot = run_for(device, "timeout 1.2 sh -c 'while :; do :; done'", 0.9)  # 54 under load
    time.sleep(1.2)  # 72 device seconds at rest
    cooled = battery_temp(device)
    assert idle <= before + 15, (before, idle)  # tenths of a degree
    assert hot >= idle + 30, (idle, hot)
    assert cooled <= hot - 30, (hot, cooled)


def test_unknown_service_is_refused_and_device_keeps_working(device):
    conn = device.open_transport()
    try:
        conn.send_command("frobnicate:now")
        with pytest.raises(adbutils.AdbError):
            conn.check_okay()
    finally:
        conn.close()
    assert device.shell("echo still here") == "still here"


def test_command_line_device_keeps_storage_across_restarts(adb_server, tmp_path):
    root, port = tmp_path / "phone", free_port()
    serial = f"127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "harness.devices.emulated.adbd",
        "--profile",
        "galaxy-s24",
        "--port",
        str(port),
        "--root",
        str(root),
    ]
    for attempt in range(2):
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            assert b"emulated adbd" in proc.stdout.readline()
            wait_online(adb_server, serial)
            if attempt == 0:
                assert (
                    adb(
                        adb_server, "-s", serial, "shell", "echo kept > /sdcard/note.txt"
                    ).returncode
                    == 0
                )
            else:
                assert (
                    adb(adb_server, "-s", serial, "shell", "cat /sdcard/note.txt").stdout
                    == b"kept\n"
                )
        finally:
            adb(adb_server, "disconnect", serial)
            proc.terminate()
            proc.wait(timeout=10)
