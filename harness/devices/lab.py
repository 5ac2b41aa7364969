"""A lab of phones: device specs that name their adb server, and pools of like phones.

A device spec is ``local``, ``adb`` (the only attached phone), ``adb:SERIAL``, or
``adb:SERIAL@HOST:PORT`` (a phone behind the adb server of another host, which runs
``adb -a nodaemon server``: adb's own remote protocol is the distribution layer, as device farms
use it). ``pool:PROFILE`` stands for every reachable phone that matches that device profile, on
every adb server given; a grid cell aimed at a pool runs on whichever member is free.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from harness.errors import UserError

DEFAULT_SERVER = "127.0.0.1:5037"
POOL_PREFIX = "pool:"


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``--device``: its kind, serial (None: the only one) and adb server."""

    kind: str  # local | adb
    serial: str | None = None
    server: str | None = None  # HOST:PORT; None: the run's --adb-server, else 127.0.0.1:5037

    @property
    def text(self) -> str:
        if self.kind == "local":
            return "local"
        where = f"@{self.server}" if self.server else ""
        return f"adb:{self.serial}{where}" if self.serial else "adb"


def parse_device(spec: str) -> DeviceSpec:
    """``local``, ``adb``, ``adb:SERIAL`` or ``adb:SERIAL@HOST:PORT`` (a serial may hold colons:
    an emulated or Wi-Fi phone's is ``HOST:PORT`` itself, so the server follows the last ``@``)."""
    if spec == "local":
        return DeviceSpec("local")
    if spec == "adb":
        return DeviceSpec("adb")
    if spec.startswith("adb:"):
        serial, at, server = spec[len("adb:") :].rpartition("@")
        if not at:
            serial, server = server, None
        if not serial:
            raise UserError(
                f"device {spec!r} names no serial; use adb:SERIAL or adb:SERIAL@HOST:PORT"
            )
        if server is not None:
            check_server(server, f"device {spec!r}")
        return DeviceSpec("adb", serial, server)
    raise UserError(
        f"unknown device {spec!r}; use 'local', 'adb:SERIAL', 'adb:SERIAL@HOST:PORT' or"
        " 'pool:PROFILE'"
    )


def check_server(server: str, where: str = "--adb-server") -> str:
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"{where}: the adb server must be HOST:PORT, got {server!r}")
    return server


def is_pool(spec: str) -> bool:
    return spec.startswith(POOL_PREFIX)


def pool_profile(spec: str) -> str:
    """The profile a ``pool:PROFILE`` spec names, checked to exist."""
    from harness.devices.profiles import get_profile

    name = spec[len(POOL_PREFIX) :]
    if not name:
        raise UserError(f"device {spec!r} names no profile; use pool:PROFILE, e.g. pool:galaxy-s24")
    get_profile(name)  # a one-line error naming the known profiles
    return name


@dataclass(frozen=True)
class Attached:
    """One phone an adb server reports, with the profile it matches (None: none)."""

    serial: str
    server: str
    profile: str | None
    model: str

    @property
    def spec(self) -> str:
        return f"adb:{self.serial}@{self.server}"


def survey(servers: list[str]) -> list[Attached]:
    """Every online phone on each adb server, with the profile it matches.

    A server that does not answer, and a serial reported by two servers (one phone connected to
    two hosts, so two grids would drive it at once), are one-line errors."""
    found: list[Attached] = []
    seen: dict[str, str] = {}
    for server in servers or [DEFAULT_SERVER]:
        for serial in online_serials(check_server(server)):
            if serial in seen:
                raise UserError(
                    f"phone {serial} is attached to two adb servers ({seen[serial]} and {server});"
                    f" disconnect it from one (`adb -H HOST -P PORT disconnect {serial}`)"
                )
            seen[serial] = server
            props = _props(serial, server)
            found.append(Attached(serial, server, _profile_of(props), props["ro.product.model"]))
    return found


def expand_pool(spec: str, servers: list[str]) -> list[str]:
    """The device specs of every reachable phone the pool's profile matches, in server order."""
    profile = pool_profile(spec)
    attached = survey(servers)
    members = [a.spec for a in attached if a.profile == profile]
    if not members:
        seen = ", ".join(f"{a.serial} ({a.profile or a.model})" for a in attached) or "none"
        where = ", ".join(servers or [DEFAULT_SERVER])
        raise UserError(
            f"{spec} matches no reachable phone on {where} (attached: {seen}); attach one, add its"
            " host with --adb-server HOST:PORT, or name another profile"
        )
    return members


def online_serials(server: str) -> list[str]:
    import adbutils

    from harness.devices.adb import adb_client

    try:
        return [d.serial for d in adb_client(server).list() if d.state == "device"]
    except (adbutils.AdbError, OSError) as exc:
        raise UserError(
            f"the adb server at {server} does not answer ({exc}); start it on that host with"
            " `adb -a nodaemon server` (or `adb start-server` locally), or drop it from"
            " --adb-server"
        ) from None


def _props(serial: str, server: str) -> dict[str, str]:
    from harness.devices.adb import PROPS, adb_client

    device = adb_client(server).device(serial)
    script = "; ".join(f'echo "$(getprop {shlex.quote(p)})"' for p in PROPS)
    values = device.shell(script, timeout=30).splitlines()
    return dict(zip(PROPS, [*values, *[""] * len(PROPS)][: len(PROPS)], strict=True))


def _profile_of(props: dict[str, str]) -> str | None:
    from harness.devices.profiles import match_profile

    profile = match_profile("adb", props)
    return profile.name if profile else None
