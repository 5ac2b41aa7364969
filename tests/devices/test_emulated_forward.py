"""``adb forward`` through the real adb server to the emulated phone's ``tcp:PORT`` service."""

from __future__ import annotations

import socket
import threading

import pytest

from .conftest import ADB, adb, free_port

if ADB is None:
    pytest.skip(
        "the `adb` binary is not installed (apt-get install -y adb)", allow_module_level=True
    )


def _echo_server() -> tuple[socket.socket, int]:
    """A server on the phone's loopback (the host's) that answers every chunk upper-cased."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_forward_pipes_bytes_both_ways(adb_server, phone):
    listener, remote = _echo_server()
    local = free_port()
    done = adb(adb_server, "-s", phone.serial, "forward", f"tcp:{local}", f"tcp:{remote}")
    assert done.returncode == 0, done.stderr.decode()
    assert f"tcp:{local} tcp:{remote}" in adb(adb_server, "forward", "--list").stdout.decode()
    payload = bytes(range(256)) * 4096  # 1 MiB: several ADB payloads, flow control both ways
    with socket.create_connection(("127.0.0.1", local), timeout=20) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert _recv_exactly(sock, len(payload)) == payload.upper()
        sender.join()
    listener.close()
    adb(adb_server, "-s", phone.serial, "forward", "--remove", f"tcp:{local}")


def test_forward_to_a_port_nobody_listens_on_closes_the_socket(adb_server, phone):
    local, dead = free_port(), free_port()
    assert (
        adb(adb_server, "-s", phone.serial, "forward", f"tcp:{local}", f"tcp:{dead}").returncode
        == 0
    )
    with socket.create_connection(("127.0.0.1", local), timeout=20) as sock:
        assert sock.recv(1) == b""  # the device refused the stream; adb closed our end
    adb(adb_server, "-s", phone.serial, "forward", "--remove", f"tcp:{local}")
