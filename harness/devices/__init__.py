"""Devices behind one interface: ``open_device("local")`` or ``open_device("adb:SERIAL")``."""

from __future__ import annotations

from harness.errors import UserError


def open_device(spec: str, target: str = "llvm", adb_server: str | None = None):
    if spec == "local":
        from harness.devices.local import LocalDevice

        return LocalDevice(target)
    if spec == "adb" or spec.startswith("adb:"):
        raise UserError("ADB devices are not available in this version yet; use --device local")
    raise UserError(f"unknown device {spec!r}; use 'local' or 'adb:SERIAL'")
