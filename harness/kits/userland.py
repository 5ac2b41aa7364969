"""An ARM64 userland on the host, and the kernel's permission to run its programs.

Two things come out of one Debian arm64 userland, made with ``mmdebstrap --variant=extract``
(packages unpacked on the host, nothing executed, ~10 s):

- the emulated ARM phone's own programs: a static busybox standing for Android's toybox
  (``harness.devices.emulated``), and
- the parts of the TVM kit that a stock phone lacks: glibc's loader and libraries and a
  CPython 3.11 (``harness.kits.tvm_kit``).

Running aarch64 programs on an x86_64 host needs qemu-user registered with binfmt_misc, so that
the kernel hands every aarch64 ELF it is asked to exec (also inside a chroot and in child
processes: the registration is made with the F flag) to qemu. That is a root operation;
``arm64_blocker()`` says in one line why it is not possible where it is not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from harness.cache import build_atomically, cache_dir, mark_used
from harness.errors import UserError

SUITE = "bookworm"  # Debian 12: Python 3.11, the same minor version as the cp311 wheels we pin
PACKAGES = ("busybox-static", "python3", "libstdc++6")
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_ENTRY = BINFMT_DIR / "qemu-aarch64"
APT_FIX = "apt-get install -y qemu-user-static binfmt-support mmdebstrap"
# qemu's CPU models for everything the emulated phone runs (qemu_cpu_for picks one):
# - neoverse-n1: Armv8.2-A with dotprod and fp16, the floor our ARM builds target.
# - i8mm (Armv8.6-A) is in no named model of qemu 7.2 (Debian 12's), only in "max"; "max" with
#   its SVE off, because numpy's OpenBLAS takes SVE paths under it that raise false
#   floating-point warnings ("divide by zero encountered in matmul"), and with SVE on but SME off
#   even return a wrong x @ x.T. With sve=off both are gone and i8mm stays.
QEMU_CPU = "neoverse-n1"
QEMU_CPU_I8MM = "max,sve=off"
# The /proc/cpuinfo features each model executes: its AT_HWCAP and AT_HWCAP2 bits under
# qemu-aarch64 7.2, by the kernel's names (read with getauxval in the ARM64 userland's Python).
QEMU_FEATURES = {
    QEMU_CPU: frozenset(
        "fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop"
        " asimddp".split()
    ),
    QEMU_CPU_I8MM: frozenset(
        "fp asimd aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc"
        " dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm ilrcpc flagm sb paca pacg dcpodp flagm2"
        " frint i8mm bf16 rng bti mte".split()
    ),
}


def qemu_cpu_for(features) -> str:
    """The qemu CPU model for a phone with these /proc/cpuinfo features: the i8mm-capable one
    where it lists i8mm (so that the harness's i8mm build runs), else neoverse-n1."""
    return QEMU_CPU_I8MM if "i8mm" in features else QEMU_CPU


def executable_features(features, model: str) -> list[str]:
    """Of a phone's /proc/cpuinfo features, those qemu's ``model`` executes: what the emulated
    phone's Features line may claim (a feature it lacks would have a program that trusts
    /proc/cpuinfo die of SIGILL). Kernel-only flags the model does not report (evtstrm, ssbs,
    dit, uscat) drop out too; nothing here reads them."""
    return [f for f in features if f in QEMU_FEATURES[model]]


def _binfmt_enabled() -> bool:
    try:
        return BINFMT_ENTRY.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def arm64_blocker() -> str | None:
    """Why aarch64 programs cannot run on this host (one line naming the fix), or None.

    Tries to enable what is missing when it can (root): mounting binfmt_misc and registering
    Debian's qemu-aarch64 handler.
    """
    if _binfmt_enabled():
        return None
    if (
        not shutil.which("qemu-aarch64-static")
        and not Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P").exists()
    ):
        return (
            f"qemu-user is not installed, so ARM64 programs cannot run here; install it: {APT_FIX}"
        )
    if os.geteuid() != 0:
        return (
            "running ARM64 programs needs qemu-user registered with binfmt_misc, which only root"
            " can do; run `slm-bench kit userland` once as root"
        )
    if not os.path.ismount(BINFMT_DIR):
        result = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            return (
                f"cannot mount {BINFMT_DIR} ({result.stderr.strip() or 'mount failed'}); ARM64"
                " emulation needs a kernel with binfmt_misc (a container must allow it)"
            )
    if not _binfmt_enabled() and shutil.which("update-binfmts"):
        subprocess.run(
            ["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, text=True
        )
    if not _binfmt_enabled():
        return (
            "qemu-aarch64 is not registered with binfmt_misc; install Debian's handlers:"
            f" {APT_FIX.replace('mmdebstrap', 'binfmt-support')}"
        )
    return None


def require_arm64(what: str) -> None:
    reason = arm64_blocker()
    if reason:
        raise UserError(f"{what}: {reason}")


def _mirror() -> str:
    """The Debian mirror to make the userland from: SLM_BENCH_DEBIAN_MIRROR, else the one apt
    already uses on this machine (deb822 sources first, then sources.list). The packages are
    Debian 12's, so an Ubuntu host's archive does not serve them: such a host names a mirror."""
    if os.environ.get("SLM_BENCH_DEBIAN_MIRROR"):
        return os.environ["SLM_BENCH_DEBIAN_MIRROR"]
    for path, prefix in (
        (Path("/etc/apt/sources.list.d/debian.sources"), "URIs:"),
        (Path("/etc/apt/sources.list"), "deb "),
    ):
        try:
            for line in path.read_text().splitlines():
                if line.startswith(prefix) and "debian" in line and "security" not in line:
                    return line.split()[1]
        except OSError:
            continue
    raise UserError(
        "no Debian mirror configured for apt here (the ARM64 userland is made from Debian 12's"
        " arm64 packages); set SLM_BENCH_DEBIAN_MIRROR to a Debian mirror's URL"
    )


def _mmdebstrap(work: Path) -> None:
    cmd = [
        "mmdebstrap",
        "--arch=arm64",
        "--variant=extract",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(work),
        f"deb {_mirror()} {SUITE} main",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(
            f"mmdebstrap failed ({tail}); check that apt reaches its Debian mirror, then rerun"
        )


def userland_path() -> Path:
    key = f"{SUITE}-" + "-".join(sorted(PACKAGES))
    return cache_dir("kits") / f"arm64-userland-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def prepare_userland(log=print) -> Path:
    """The cached arm64 userland (made on first use; a crash never leaves a half-made one)."""
    out = userland_path()
    if (out / "usr/bin/python3.11").is_file() and (out / "bin/busybox").is_file():
        mark_used(out)
        return out
    if not shutil.which("mmdebstrap"):
        raise UserError(
            f"mmdebstrap is missing, so the ARM64 userland cannot be made; install it: {APT_FIX}"
        )
    log(f"making the arm64 userland ({', '.join(PACKAGES)} from Debian {SUITE}) in {out}")
    start = time.monotonic()
    build_atomically(out, _mmdebstrap)
    log(f"arm64 userland ready in {time.monotonic() - start:.0f} s")
    return out
