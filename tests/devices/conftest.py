"""Fixtures for device tests: a private adb server (never the default port 5037) and an
emulated Galaxy S24, x86_64 or ARM64, connected to it with ``adb connect``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from harness.devices.emulated.adbd import EmulatedDevice, load_profile

ADB = shutil.which("adb")
# One real second is five device minutes: the S24 profile's battery time constant (300 s) is 1 s.
TIME_SCALE = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adb(
    server_port: int, *args: str, input: bytes | None = None, timeout: float = 20
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ADB, "-P", str(server_port), *args],
        input=input,
        capture_output=True,
        stdin=None if input is not None else subprocess.DEVNULL,
        timeout=timeout,
    )


def wait_online(server_port: int, serial: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        adb(server_port, "connect", serial)
        out = adb(server_port, "devices").stdout.decode()
        if f"{serial}\tdevice" in out:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{serial} never came online:\n{out}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def adb_server():
    port = free_port()
    started = adb(port, "start-server")
    assert started.returncode == 0, started.stderr.decode()
    yield port
    adb(port, "kill-server")


@pytest.fixture(scope="module")
def phone(adb_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("phone")
    device = EmulatedDevice(load_profile("galaxy-s24"), root, time_scale=TIME_SCALE)
    device.start()
    wait_online(adb_server, device.serial)
    yield device
    adb(adb_server, "disconnect", device.serial)
    device.stop()


def start_arm_phone(adb_server, folder, profile: dict):
    device = EmulatedDevice(profile, folder, time_scale=TIME_SCALE, arch="aarch64")
    device.start()
    wait_online(adb_server, device.serial)
    return device


@pytest.fixture(scope="module")
def arm_phone(adb_server, tmp_path_factory):
    """The Galaxy S24: i8mm in its Features line, its programs on qemu's max with SVE off."""
    from harness.kits.userland import arm64_blocker

    blocker = arm64_blocker()
    if blocker is not None:
        pytest.skip(f"no ARM64 emulation here: {blocker}")
    device = start_arm_phone(
        adb_server, tmp_path_factory.mktemp("arm-phone"), load_profile("galaxy-s24")
    )
    yield device
    adb(adb_server, "disconnect", device.serial)
    device.stop()
