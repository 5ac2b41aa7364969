"""An emulated phone: an adbd that speaks the real ADB transport protocol on a loopback port.

The real adb server talks to it as to a phone over TCP::

    python -m harness.devices.emulated.adbd --profile galaxy-s24 --port 5600 --root ./phone
    adb connect 127.0.0.1:5600 && adb -s 127.0.0.1:5600 shell getprop ro.product.model

or in-process: ``port = EmulatedDevice(profile, root).start()``. Services: ``shell:`` /
``exec:`` (raw), ``shell,v2,...:`` (shell protocol v2, exit codes, separate stderr),
``sync:`` (push/pull/stat/ls, v1 and v2 stat/list) and ``tcp:PORT`` (``adb forward``). The
phone's storage is the ``root`` folder, so a restarted device keeps what was pushed. No AUTH, no
TLS.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path

from harness.devices.emulated.protocol import Connection, Stream
from harness.devices.emulated.services import (
    ARCHES,
    DeviceState,
    shell_service,
    sync_service,
    tcp_service,
)
from harness.errors import UserError

PROFILE_DIR = Path(__file__).resolve().parents[3] / "device_profiles"
# What adb 29 (Debian's) understands and this device implements. Not advertised: abb/abb_exec/
# cmd (no package manager), sendrecv_v2 (adb >= 31), delayed_ack (OKAY payload semantics).
FEATURES = ("shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir", "fixed_push_symlink_timestamp")


def load_profile(name_or_path: str) -> dict:
    """A device profile as a plain dict, from ``device_profiles/NAME.yaml`` or a YAML path."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


class EmulatedDevice:
    """One emulated phone listening on ``host:port`` (0 picks a free port)."""

    def __init__(
        self,
        profile: dict,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        arch: str = "x86_64",
        log=print,
        charging: bool = False,
    ):
        self.profile, self.host, self.port = profile, host, port
        self.state = DeviceState(
            profile, Path(root), time_scale=time_scale, arch=arch, log=log, charging=charging
        )
        props = self.state.props
        self.banner = (
            f"device::ro.product.name={props.get('ro.product.name', '')};"
            f"ro.product.model={props.get('ro.product.model', '')};"
            f"ro.product.device={props['ro.product.device']};features={','.join(FEATURES)}"
        ).encode()
        self._listener: socket.socket | None = None
        self._connections: set[Connection] = set()
        self._lock = threading.Lock()

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def root(self) -> Path:
        return self.state.root

    def start(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(8)
        self._listener, self.port = listener, listener.getsockname()[1]
        threading.Thread(target=self._accept, name=f"adbd:{self.port}", daemon=True).start()
        return self.port

    def _accept(self) -> None:
        listener = self._listener
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # stop() closed the listener
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, self.banner, self._open_service)
            with self._lock:
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        try:
            conn.serve()
        finally:
            with self._lock:
                self._connections.discard(conn)

    def _open_service(self, stream: Stream):
        name = stream.service
        if name.startswith(("shell:", "exec:")):
            return shell_service(self.state, name.split(":", 1)[1], v2=False)
        if name.startswith("shell,"):
            args, _, command = name.partition(":")
            return shell_service(self.state, command, v2="v2" in args.split(","))
        if name == "sync:":
            return sync_service(self.state)
        if name.startswith("tcp:"):  # adb forward tcp:LOCAL tcp:REMOTE
            return tcp_service(name[len("tcp:") :])
        return None  # refused with CLSE: the host reports "closed"

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.shutdown()
        self.state.close()  # no program of the phone outlives it, none is left stopped

    def __enter__(self) -> EmulatedDevice:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.devices.emulated.adbd", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--profile", default="galaxy-s24", help="profile name in device_profiles/ or a YAML path"
    )
    parser.add_argument("--port", type=int, default=5555, help="TCP port (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("emulated-phone"),
        help="folder that holds the phone's storage",
    )
    parser.add_argument(
        "--thermal-speedup",
        "--time-scale",
        dest="time_scale",
        type=float,
        default=1.0,
        metavar="N",
        help=(
            "run the thermal model N times faster than real time (device seconds per real second), "
            "so that a test heats and throttles the phone within seconds"
        ),
    )
    parser.add_argument(
        "--charging",
        action="store_true",
        help=(
            "a plugged-in phone (status Charging); by default it discharges, as one on adb over"
            " Wi-Fi"
        ),
    )
    parser.add_argument(
        "--arch",
        choices=ARCHES,
        default="x86_64",
        help="CPU of the phone's programs: host x86_64 ones, or aarch64 under qemu-user",
    )
    args = parser.parse_args(argv)
    try:
        device = EmulatedDevice(
            load_profile(args.profile),
            args.root,
            host=args.host,
            port=args.port,
            time_scale=args.time_scale,
            arch=args.arch,
            charging=args.charging,
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    port = device.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop() still kills running shells
    print(
        f"emulated adbd ({args.profile}, {args.arch}) on {args.host}:{port}, storage in"
        f" {device.root}; adb connect {args.host}:{port}",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        device.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
