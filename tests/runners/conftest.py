"""The device tests' private adb server and emulated Galaxy S24, shared with the runner tests."""

from tests.devices.conftest import ADB, adb, adb_server, free_port, phone, wait_online  # noqa: F401
