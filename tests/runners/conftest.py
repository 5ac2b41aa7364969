"""The device tests' private adb server and emulated Galaxy S24, shared with the runner tests,
plus the same phone in a process of its own (``phone_process``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.devices.conftest import ADB, adb, adb_server, free_port, phone, wait_online  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def phone_process(adb_server, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """The emulated S24 as ``python -m harness.devices.emulated.adbd`` (as `slm-bench devices
    emulate` runs it). Needed where the host side blocks in TVM's RPC client: it holds the GIL
    while it waits for the reply, which would starve an in-process phone's threads."""
    root = tmp_path_factory.mktemp("phone-process")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.devices.emulated.adbd",
            "--profile",
            "galaxy-s24",
            "--port",
            str(port),
            "--root",
            str(root),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert "emulated adbd" in proc.stdout.readline()  # printed once it listens
    serial = f"127.0.0.1:{port}"
    wait_online(adb_server, serial)
    yield serial, root
    adb(adb_server, "disconnect", serial)
    proc.terminate()  # its SIGTERM handler stops the device, which kills the shells it started
    proc.wait(timeout=30)
