"""The emulated phone's CPU: the profile's cores as a phone's kernel shows them, and a ``taskset``
that pins phone cores onto the host's CPUs.

The phone answers ``/proc/cpuinfo`` (the arm64 kernel's format, one block per core) and
``/sys/devices/system/cpu`` (possible/present/online lists, each core's cpufreq clocks in kHz)
from the profile's ``cpu:`` section, so that the harness reads the phone's topology as it would
from a real one. Phone core i runs on host CPU ``hosts[i % len(hosts)]`` (``hosts``: the adbd's
affinity when the phone starts): the phone's ``taskset`` records the phone mask it was given in
``.emulated/affinity/PID`` and execs the host's taskset with the mapped host CPUs, and
``/proc/PID/status`` shows the recorded phone cores that the process may still run on. The
core-pinning control path is exercised end to end; the timings are the host's.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

from harness.devices.topology import ARM_PARTS, format_list, parse_list

CPU_DIR = "/sys/devices/system/cpu"
SANDBOXED = ("/proc/cpuinfo", CPU_DIR)  # phone paths the x86_64 phone's commands are rewritten to
AFFINITY = ".emulated/affinity"  # PID -> the phone mask its taskset was given (hex)
PART_NUMBERS = {name: number for number, name in ARM_PARTS.items()}
# The profile names no lowest clock; phones' lowest cpufreq step is a few hundred MHz. Only
# cpuinfo_min_freq shows it, and the harness does not read it.
MIN_KHZ = 400_000
# Busybox's taskset applet on the aarch64 phone, renamed (same length and sort position) so that
# `taskset` reaches the phone's script: see free_busybox_taskset.
BUSYBOX_TASKSET = "taskse_"
# Masks are shell arithmetic in the taskset script: 64-bit signed, so at most 60 phone cores
# (15 hex digits) keeps every mask positive.
MAX_CORES = 60


class EmulatedCpu:
    """The profile's ``cpu:`` section (a plain dict, as in the YAML) mapped onto ``hosts``."""

    def __init__(self, spec: dict, hosts, features: list[str] | None = None):
        """``features``: the Features line, when not the profile's own (the aarch64 phone shows
        only what its qemu CPU model executes)."""
        self.cores: dict[int, tuple[str, int]] = {}  # core -> (part, max kHz)
        for cluster in spec["clusters"]:
            if cluster["part"] not in PART_NUMBERS:
                raise ValueError(
                    f"unknown CPU part {cluster['part']!r}; known: {', '.join(PART_NUMBERS)}"
                )
            for core in parse_list(str(cluster["cores"])):
                self.cores[core] = (cluster["part"], int(cluster["max_khz"]))
        self.n = len(self.cores)
        if sorted(self.cores) != list(range(self.n)) or self.n > MAX_CORES:
            raise ValueError(
                f"the profile's clusters must number 0..N-1 once each, N <= {MAX_CORES}"
            )
        self.features = [
            str(f) for f in (spec.get("features") or [] if features is None else features)
        ]
        self.hosts = sorted(hosts)
        self.all_mask = (1 << self.n) - 1
        self._written: dict[int, int] = {}  # core -> the scaling_cur_freq last written

    # -- the mapping ---------------------------------------------------------------------------
    def host_of(self, core: int) -> int:
        return self.hosts[core % len(self.hosts)]

    def cpu_map(self) -> str:
        """``0:0,1:1,2:0,...``: phone core:host CPU (the ``ro.slm_bench.cpu_map`` property)."""
        return ",".join(f"{core}:{self.host_of(core)}" for core in range(self.n))

    def describe(self) -> str:
        """The mapping in words, for a run to say how its phone cores were emulated."""
        n = len(self.hosts)
        return (
            f"{self.n} phone cores on host CPUs {format_list(self.hosts)}: phone core i runs on"
            f" host CPU hosts[i mod {n}], hosts = {self.hosts} ({self.cpu_map()}); the timings are"
            " the host's"
        )

    def max_khz(self, core: int) -> int:
        return self.cores[core][1]

    # -- files ---------------------------------------------------------------------------------
    def cpuinfo(self) -> str:
        """/proc/cpuinfo as an arm64 Android kernel writes it (arch/arm64/kernel/cpuinfo.c)."""
        features = " ".join(self.features)
        return "".join(
            f"processor\t: {core}\nBogoMIPS\t: 52.00\nFeatures\t: {features}\n"
            f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
            f"CPU part\t: 0x{PART_NUMBERS[part]:03x}\nCPU revision\t: 0\n\n"
            for core, (part, _) in sorted(self.cores.items())
        )

    def write_files(self, root: Path) -> None:
        """The files that do not change: cpuinfo, the core lists, each core's clock range."""
        (root / "proc").mkdir(parents=True, exist_ok=True)
        (root / "proc/cpuinfo").write_text(self.cpuinfo())
        base = root / CPU_DIR.lstrip("/")
        base.mkdir(parents=True, exist_ok=True)
        every = format_list(list(range(self.n))) + "\n"
        for name, text in (
            ("possible", every),
            ("present", every),
            ("online", every),
            ("offline", "\n"),
        ):
            (base / name).write_text(text)
        for core, (_, max_khz) in self.cores.items():
            (base / f"cpu{core}/cpufreq").mkdir(parents=True, exist_ok=True)
            (base / f"cpu{core}/online").write_text("1\n")
            for name, khz in (
                ("cpuinfo_max_freq", max_khz),
                ("cpuinfo_min_freq", MIN_KHZ),
                ("scaling_max_freq", max_khz),
                ("scaling_min_freq", MIN_KHZ),
            ):
                (base / f"cpu{core}/cpufreq/{name}").write_text(f"{khz}\n")
        (root / AFFINITY).mkdir(parents=True, exist_ok=True)

    def write_cur_freq(self, root: Path, core: int, khz: int) -> None:
        """scaling_cur_freq, rewritten only when it changed (refresh runs before every command)."""
        if self._written.get(core) != khz:
            (root / CPU_DIR.lstrip("/") / f"cpu{core}/cpufreq/scaling_cur_freq").write_text(
                f"{khz}\n"
            )
            self._written[core] = khz

    # -- taskset -------------------------------------------------------------------------------
    def taskset_body(self, host_taskset: list[str]) -> str:
        """The phone's ``taskset`` (toybox's syntax and messages), for dash and busybox ash.

        ``host_taskset`` is the host's command (util-linux's path on x86_64, the chroot's
        busybox applet on aarch64); it is given the host CPUs as a list (``-c``), not a mask, so
        that host CPUs past 63 need no shell arithmetic."""
        ht = " ".join(_quote(w) for w in host_taskset)
        hosts = " ".join(str(self.host_of(core)) for core in range(self.n))
        return _TASKSET.format(n=self.n, all=self.all_mask, hosts=hosts, ht=ht)

    # -- /proc/PID/status ----------------------------------------------------------------------
    def proc_status(self, root: Path, pid: int) -> str | None:
        """The host's /proc/PID/status with its allowed CPUs shown as phone cores: those of the
        phone mask (recorded by taskset for the process or its nearest ancestor; all cores when
        none) whose host CPU the process may still run on. None when there is no such process."""
        try:
            text = Path(f"/proc/{pid}/status").read_text()
            allowed = os.sched_getaffinity(pid)
        except OSError:
            return None
        phone = self.recorded_mask(root, pid, text)
        cores = [c for c in range(self.n) if phone >> c & 1 and self.host_of(c) in allowed]
        lines = []
        for line in text.splitlines(keepends=True):
            if line.startswith("Cpus_allowed:"):
                line = f"Cpus_allowed:\t{_kernel_mask(cores, self.n)}\n"
            elif line.startswith("Cpus_allowed_list:"):
                line = f"Cpus_allowed_list:\t{format_list(cores)}\n"
            lines.append(line)
        return "".join(lines)

    def recorded_mask(self, root: Path, pid: int, status: str) -> int:
        """The phone mask of ``pid``: its own record, else its thread group's, else its nearest
        ancestor's (children inherit affinity), else every core."""
        seen = set()
        while pid > 1 and pid not in seen and len(seen) < 64:
            seen.add(pid)
            fields = _fields(status)
            for candidate in (pid, fields.get("Tgid")):
                try:
                    return (
                        int((root / AFFINITY / str(candidate)).read_text().strip(), 16)
                        & self.all_mask
                    )
                except (OSError, ValueError):
                    pass
            try:
                pid = int(fields.get("PPid", "0"))
                status = Path(f"/proc/{pid}/status").read_text()
            except (OSError, ValueError):
                break
        return self.all_mask

    def clean_records(self, root: Path) -> None:
        """Drop the records of processes that have ended, so the folder does not grow forever."""
        try:
            names = os.listdir(root / AFFINITY)
        except OSError:
            return
        for name in names:
            if name.isdigit() and not os.path.exists(f"/proc/{name}"):
                (root / AFFINITY / name).unlink(missing_ok=True)


def free_busybox_taskset(root: Path, log=print) -> list[str]:
    """The aarch64 phone's host-side taskset: busybox's applet, renamed in the phone's copy.

    Debian's static busybox is built with FEATURE_SH_STANDALONE: its ash runs an applet before it
    searches PATH, so ``taskset`` in any phone shell (``sh -c 'taskset -p $$'`` too) would reach
    the applet, never the phone's script in /.emulated/bin, and pin to host CPU numbers. Renaming
    the applet in busybox's table of names makes ``taskset`` an ordinary PATH command; the script
    calls the applet by its new name. Idempotent."""
    busybox = root / "system/bin/busybox"
    names = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    if "taskset" in names and not _rename_applet(busybox, names, "taskset", BUSYBOX_TASKSET):
        log(
            "warning: could not rename busybox's taskset applet; the ARM64 phone's taskset pins"
            " host CPUs as given"
        )
        return ["/system/bin/busybox", "taskset"]
    if "taskset" not in names and BUSYBOX_TASKSET not in names:
        log("warning: the ARM64 phone's busybox has no taskset applet; its taskset cannot pin")
    link, script = root / "system/bin/taskset", "../../.emulated/bin/taskset"  # the applet's link
    if link.is_symlink() and os.readlink(link) != script:
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(script)
    return ["/system/bin/busybox", BUSYBOX_TASKSET]


def _rename_applet(busybox: Path, names: list[str], old: str, new: str) -> bool:
    """Rename an applet in busybox's table of names: one NUL-separated string in ``--list``'s
    (sorted) order, searched by strcmp, so the new name keeps the length and the sort position."""
    renamed = [new if n == old else n for n in names]
    if len(new) != len(old) or renamed != sorted(renamed):
        return False
    table = b"\0".join(n.encode() for n in names) + b"\0"
    data = busybox.read_bytes()
    if data.count(table) != 1:
        return False
    at = data.find(table) + sum(len(n) + 1 for n in names[: names.index(old)])
    patched = busybox.with_name(".busybox.patched")
    patched.write_bytes(data[:at] + new.encode() + data[at + len(old) :])
    patched.chmod(busybox.stat().st_mode)
    os.replace(patched, busybox)  # never half-written: the phone's shell is this file
    return True


def _fields(status: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in status.splitlines())}


def _kernel_mask(cores: list[int], ncores: int) -> str:
    """Cpus_allowed as the kernel prints it: hex zero-padded to the CPU count's digits, a comma
    every 8 digits from the right (10 cores, 7-9 -> ``380``)."""
    digits = f"{sum(1 << c for c in cores):0{math.ceil(ncores / 4)}x}"
    groups = []
    while digits:
        groups.insert(0, digits[-8:])
        digits = digits[:-8]
    return ",".join(groups)


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


# Written into .emulated/bin/taskset after the shebang and D= line (services._script). Messages
# are toybox's: `taskset: bad mask 'zz'`, `taskset: failed to set pid N's affinity: Invalid
# argument` (a mask with none of the phone's cores; like the kernel, bits past them are dropped).
# Toybox itself refuses a 0x prefix; this one takes it.
_TASKSET = r"""N={n} ALL={all} HOSTS="{hosts}"  # phone core i runs on host CPU word i of HOSTS
die() {{ echo "taskset: $*" >&2; exit 1; }}
mask() {{  # $1: the mask as given, $2: the pid it is for -> v, limited to the phone's cores
  m=${{1#0[xX]}}
  case $m in ''|*[!0-9a-fA-F]*) die "bad mask '$1'";; esac
  while [ ${{#m}} -gt 15 ]; do m=${{m#?}}; done  # bits past core 59 name no core of a phone
  v=$(( 0x$m & ALL ))
  [ "$v" -ne 0 ] || die "failed to set pid $2's affinity: Invalid argument"
}}
hostlist() {{  # v -> the host CPUs its phone cores run on, as a list for taskset -c
  l= i=0
  for h in $HOSTS; do [ $(( v >> i & 1 )) -eq 1 ] && l="$l,$h"; i=$((i + 1)); done
  echo "${{l#,}}"
}}
shown() {{ cat "$D/affinity/$1" 2>/dev/null || printf '%x\n' "$ALL"; }}
a= p=
while :; do case $1 in -a) a=-a;; -p) p=1;; -pa|-ap) a=-a p=1;; *) break;; esac; shift; done
if [ -z "$p" ]; then
  [ $# -ge 2 ] || die "Needs 2 args"
  mask "$1" $$; shift
  printf '%x\n' "$v" > "$D/affinity/$$"  # exec keeps the pid: the pinned program's record
  exec {ht} -c "$(hostlist)" "$@"
fi
[ $# -ge 1 ] || set -- $$
pid=${{2:-$1}}
case $pid in ''|*[!0-9]*) die "Not int $pid";; esac
{ht} -p "$pid" >/dev/null 2>&1 || die "failed to get pid $pid's affinity: No such process"
echo "pid $pid's current affinity mask: $(shown "$pid")"
[ $# -ge 2 ] || exit 0
mask "$1" "$pid"
{ht} $a -c -p "$(hostlist)" "$pid" >/dev/null || exit 1
printf '%x\n' "$v" > "$D/affinity/$pid"
echo "pid $pid's new affinity mask: $(shown "$pid")"
"""
