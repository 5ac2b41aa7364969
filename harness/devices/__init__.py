"""Devices behind one interface: ``open_device("local")``, ``open_device("adb:SERIAL")`` or
``open_device("adb:SERIAL@HOST:PORT")`` (``harness.devices.lab`` parses them, and pools)."""

from __future__ import annotations

from harness.errors import UserError


def open_device(spec: str, target: str = "llvm", adb_server: str | None = None):
    from harness.devices.lab import is_pool, parse_device

    if is_pool(spec):
        raise UserError(
            f"{spec} is a pool of phones, which a grid spreads its cells over; a run needs one"
            " device: adb:SERIAL (`slm-bench devices` lists them)"
        )
    parsed = parse_device(spec)
    if parsed.kind == "local":
        from harness.devices.local import LocalDevice

        return LocalDevice(target)
    from harness.devices.adb import AdbDevice

    return AdbDevice(parsed.serial, parsed.server or adb_server)
