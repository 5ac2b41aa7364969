"""The emulated phone's ARM64 side: a phone root whose every program is an aarch64 ELF.

The phone's storage folder becomes the root of a chroot that holds only what a stock Android
phone's shell offers: ``/system/bin/sh`` and its tools are a static aarch64 busybox (standing
for Android's toybox; no Python, no glibc, no dynamic loader), ``/data``, ``/sdcard``, and the
emulated ``/proc`` and ``/sys`` files. The kernel runs each aarch64 ELF through qemu-user
(binfmt_misc, see ``harness.kits.userland``), so a shell command, a binary the harness pushes
and every child they start execute ARM64 code. (The kernel would still run a static x86_64
binary natively; the harness refuses binaries for the wrong CPU before pushing them, by their
ELF header against ``uname -m``.) Programs share the host's network (``adb forward``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from harness.errors import UserError

SHELL = "/system/bin/sh"
# Character devices a shell and loaders expect (major, minor as on Linux).
DEVICES = {"null": (1, 3), "zero": (1, 5), "random": (1, 8), "urandom": (1, 9)}


def populate(root: Path, log=print) -> None:
    """Put the ARM64 system into ``root`` (idempotent): busybox and its applets in
    /system/bin, device nodes, and the /proc files a chroot without procfs needs."""
    from harness.kits.userland import prepare_userland, require_arm64

    require_arm64("the emulated ARM64 phone")
    if os.geteuid() != 0:
        raise UserError(
            "the emulated ARM64 phone runs its programs in a chroot, which needs root; run"
            " `slm-bench devices emulate --arch arm64` as root"
        )
    system_bin = root / "system/bin"
    busybox = system_bin / "busybox"
    if not busybox.is_file():
        userland = prepare_userland(log)
        system_bin.mkdir(parents=True, exist_ok=True)
        shutil.copy2(userland / "bin/busybox", busybox)
        applets = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for name in applets:
            link = system_bin / name
            if not link.exists() and not link.is_symlink():
                link.symlink_to("busybox")
    (root / "dev").mkdir(exist_ok=True)
    for name, (major, minor) in DEVICES.items():
        node = root / "dev" / name
        if not node.exists():
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    tmp = root / "data/local/tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o1777)
    # busybox df finds a path's filesystem in /proc/mounts; "/" is the phone root's own one.
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/mounts").write_text("/dev/root / ext4 rw,relatime 0 0\n")


def command(root: Path, command_line: str, qemu_cpu: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run ``command_line`` with the phone's shell inside its root, its
    programs on qemu's CPU model ``qemu_cpu`` (``harness.kits.userland.qemu_cpu_for``)."""
    env = {
        "PATH": "/system/bin",
        "HOME": "/",
        "TMPDIR": "/data/local/tmp",
        "ANDROID_DATA": "/data",
        "EXTERNAL_STORAGE": "/sdcard",
        "ADBD_EMULATED_DIR": "/.emulated",
        "QEMU_CPU": qemu_cpu,
    }
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"  # the host's; PATH in env is the phone's
    argv = (
        [chroot, str(root), SHELL, "-c", command_line]
        if command_line
        else [chroot, str(root), SHELL]
    )
    return argv, env
