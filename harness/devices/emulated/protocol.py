"""The ADB transport protocol, device side: 24-byte messages, CNXN handshake, streams.

A message is six little-endian uint32 (command, arg0, arg1, data_length, data_crc32, magic =
command ^ 0xffffffff) followed by ``data_length`` bytes. The host opens a stream with
OPEN(host_id, 0, "service\\0"); the device answers OKAY(device_id, host_id) and both sides then
exchange WRTE, each acknowledged by an OKAY before the next WRTE on that stream. CLSE ends it.

No AUTH: the device answers the host's CNXN with its own CNXN right away (like an adbd with
``ro.adb.secure=0``). No delayed_ack, no STLS: adb 29 knows neither.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_STLS = 0x534C5453

VERSION = 0x01000001  # "skip checksum" version; the host may send data_crc32 = 0
MAX_PAYLOAD = 256 * 1024
HEADER = struct.Struct("<6I")


def pack_message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    # The checksum is optional at VERSION but costs little; older readers then accept it too.
    return (
        HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF)
        + data
    )


class StreamClosed(Exception):
    """The stream was closed (by the host, the device, or a dropped connection)."""


class Stream:
    """One ADB stream as a service sees it: blocking ``read``/``write`` with ADB flow control."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int, service: str):
        self.conn, self.local_id, self.remote_id, self.service = conn, local_id, remote_id, service
        self.closed = False
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._ready = threading.Event()  # the host acknowledged our last WRTE
        self._ready.set()
        self._write_lock = threading.Lock()
        self._on_close: list[Callable[[], None]] = []

    # -- called by the connection's reader thread ------------------------------------------
    def _feed(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self._cond.notify_all()

    def _acked(self) -> None:
        self._ready.set()

    def _mark_closed(self) -> bool:
        """Mark the stream closed and wake every waiter; False if it already was."""
        with self._cond:
            if self.closed:
                return False
            self.closed = True
            self._cond.notify_all()
        self._ready.set()
        return True

    def _closed_by_peer(self) -> None:
        if not self._mark_closed():
            return
        for callback in self._on_close:
            try:
                callback()
            except Exception:  # noqa: BLE001 - a cleanup hook must not kill the reader thread
                pass

    # -- service side ------------------------------------------------------------------------
    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def read(self, n: int = 1 << 20) -> bytes:
        """Up to ``n`` bytes from the host; ``b""`` once the stream is closed and drained."""
        with self._cond:
            while not self._buf and not self.closed:
                self._cond.wait()
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data

    def read_exact(self, n: int) -> bytes:
        with self._cond:
            while len(self._buf) < n and not self.closed:
                self._cond.wait()
            if len(self._buf) < n:
                raise StreamClosed(self.service)
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data

    def write(self, data: bytes) -> None:
        """Send ``data`` as WRTE messages, each after the host acknowledged the previous one."""
        view = memoryview(data)
        with self._write_lock:
            while view:
                while not self._ready.wait(0.5):
                    if self.closed:
                        break
                if self.closed:
                    raise StreamClosed(self.service)
                chunk, view = view[: self.conn.max_payload], view[self.conn.max_payload :]
                self._ready.clear()
                self.conn.send(A_WRTE, self.local_id, self.remote_id, bytes(chunk))

    def close(self) -> None:
        """Device-side close: CLSE to the host (once), wake anyone blocked on the stream."""
        if not self._mark_closed():
            return
        self.conn.forget(self.local_id)
        try:
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
        except OSError:
            pass


class Connection:
    """One host connection (one TCP socket from the adb server), served by a reader thread.

    ``open_service(stream)`` returns the function that serves a newly opened stream (run on a
    thread of its own) or None for an unknown service, which is refused with CLSE.
    """

    def __init__(
        self,
        sock: socket.socket,
        banner: bytes,
        open_service: Callable[[Stream], Callable[[Stream], None] | None],
    ):
        self.sock, self.banner, self.open_service = sock, banner, open_service
        self.max_payload = MAX_PAYLOAD
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        message = pack_message(command, arg0, arg1, data)
        with self._send_lock:
            self.sock.sendall(message)

    def forget(self, local_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(local_id, None)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("host closed the connection")
            buf += chunk
        return bytes(buf)

    def serve(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _crc, magic = HEADER.unpack(
                    self._recv_exact(HEADER.size)
                )
                if magic != command ^ 0xFFFFFFFF:
                    raise ConnectionError(f"bad magic in message {command:#x}")
                data = self._recv_exact(length) if length else b""
                self._dispatch(command, arg0, arg1, data)
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        with self._streams_lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream._closed_by_peer()
        try:
            self.sock.close()
        except OSError:
            pass

    def _stream(self, local_id: int) -> Stream | None:
        with self._streams_lock:
            return self._streams.get(local_id)

    def _dispatch(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            # A (re)connect: the host forgets every stream, so do we.
            with self._streams_lock:
                streams, self._streams = list(self._streams.values()), {}
            for stream in streams:
                stream._closed_by_peer()
            self.max_payload = max(4096, min(MAX_PAYLOAD, arg1 or MAX_PAYLOAD))
            self.send(A_CNXN, VERSION, MAX_PAYLOAD, self.banner)
        elif command == A_OPEN:
            service = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            with self._streams_lock:
                local_id, self._next_id = self._next_id, self._next_id + 1
            stream = Stream(self, local_id, arg0, service)
            handler = self.open_service(stream)
            if handler is None:
                self.send(A_CLSE, 0, arg0)
                return
            with self._streams_lock:
                self._streams[local_id] = stream
            self.send(A_OKAY, local_id, arg0)
            threading.Thread(
                target=_run_service,
                args=(handler, stream),
                name=f"adbd:{service[:40]}",
                daemon=True,
            ).start()
        elif command == A_WRTE:
            stream = self._stream(arg1)
            if stream is None:
                self.send(A_CLSE, 0, arg0)
                return
            stream._feed(data)
            self.send(A_OKAY, arg1, arg0)
        elif command == A_OKAY:
            stream = self._stream(arg1)
            if stream is not None:
                stream._acked()
        elif command == A_CLSE:
            stream = self._stream(arg1)
            if stream is not None:
                self.forget(arg1)
                stream._closed_by_peer()
        # A_AUTH, A_SYNC, A_STLS: never asked for, ignored.


def _run_service(handler: Callable[[Stream], None], stream: Stream) -> None:
    try:
        handler(stream)
    except StreamClosed:
        pass
    finally:
        stream.close()
