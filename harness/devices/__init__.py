"""Devices behind one interface: ``open_device("local")`` or ``open_device("adb:SERIAL")``."""

from __future__ import annotations

from harness.errors import UserError


def open_device(spec: str, target: str = "llvm", adb_server: str | None = None):
    if spec == "local":
        from harness.devices.local import LocalDevice

        return LocalDevice(target)
    if spec == "adb" or spec.startswith("adb:"):
        from harness.devices.adb import AdbDevice

        return AdbDevice(spec.split(":", 1)[1] if ":" in spec else None, adb_server)
    raise UserError(f"unknown device {spec!r}; use 'local' or 'adb:SERIAL'")
