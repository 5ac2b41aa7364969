"""One harness process per device: two runs aimed at the same phone must not interleave."""

from __future__ import annotations

import contextlib
import fcntl
import os

from harness.cache import cache_dir
from harness.errors import UserError


@contextlib.contextmanager
def device_lock(serial: str):
    """An exclusive advisory lock (flock) on a per-device
    file; released when the run ends or dies."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in serial)
    path = cache_dir("locks") / f"{safe}.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"device {serial} is in use by another slm-bench run ({holder}); wait for it to finish"
            " or stop it"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
