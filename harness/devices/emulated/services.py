"""What the emulated phone answers: shell (raw and shell protocol v2), sync, tcp:PORT (adb
forward), and its state.

The phone's storage is a folder on the host (``root`` stands for the phone's ``/``). On the x86_64
phone, shell commands run with the host's /bin/sh, in ``root``, after a plain prefix rewrite of the
phone paths that live in the sandbox (``/data``, ``/sdcard``, ``/storage/emulated/0``, the emulated
``/proc/meminfo`` and ``/sys/class/{thermal,power_supply}``; with a profile ``cpu:``, also
``/proc/cpuinfo`` and ``/sys/devices/system/cpu``: see ``cpu.py``). On the aarch64 phone they run
with its own ARM64 shell chrooted into ``root`` (``arm64.py``), so phone paths need no rewrite.
``getprop``, ``dumpsys battery`` and ``cat`` of /proc or /sys files are answered from the device
profile and a thermal model without starting a process (so polling them is not load; /proc/stat and
/proc/PID/stat from the host's, which the aarch64 phone's chroot lacks); the same answers are also
on the shell's PATH as small scripts, so pipelines such as ``getprop | grep model`` work.
"""

from __future__ import annotations

import glob
import math
import os
import posixpath
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path

from harness.devices.emulated import arm64, cpu
from harness.devices.emulated.protocol import Stream, StreamClosed
from harness.devices.emulated.thermal import DutyCycle, TripPoints
from harness.errors import UserError
from harness.kits import userland

# what the emulated phone's programs are: host ones, or ARM64 under qemu
ARCHES = (
    "x86_64",
    "aarch64",
)
THERMAL_ZONES = ("BIG", "MID", "LITTLE", "G3D", "NPU", "battery")
_ALIASES = {
    "/storage/emulated/0": "/sdcard",
    "/storage/self/primary": "/sdcard",
    "/mnt/sdcard": "/sdcard",
}
_SANDBOXED = ("/data", "/sdcard", "/proc/meminfo", "/sys/class/thermal", "/sys/class/power_supply")
# `cat /proc/PID/status`, as the harness reads a runner's back (AdbDevice.process_status)
_STATUS_RE = re.compile(r"^\s*cat\s+/proc/(\d+)/status(\s+2>\s*/dev/null)?\s*$")
# `cat /proc/stat [/proc/PID/stat] 2>/dev/null`, as AdbDevice.cpu_counters reads the CPU's counters
_STAT_RE = re.compile(r"^\s*cat\s+/proc/stat((?:\s+/proc/\d+/stat)*)(\s+2>\s*/dev/null)?\s*$")
# The load is measured over at least this many wall seconds: three duty-cycle periods of a
# throttled phone (a shorter window could fall in a stop phase and read as idle) and 30 clock
# ticks, the resolution of the CPU seconds it counts.
BUSY_WINDOW_S = 0.3


def _path_re(sandboxed: tuple[str, ...]) -> re.Pattern:
    """Whole phone-path words that the x86_64 phone's commands get rewritten into the sandbox."""
    words = sorted([*_ALIASES, *sandboxed], key=len, reverse=True)
    return re.compile(r"(?<![\w.~/-])(" + "|".join(re.escape(p) for p in words) + r")(?![\w.-])")


class ThermalModel:
    """Battery temperature: first-order approach to ``ambient + rise * busy`` with time constant
    ``tau`` seconds of device time; ``time_scale`` device seconds pass per wall-clock second.

    ``busy`` is how many cores the phone's programs kept busy since the last reading (at most
    2 count): CPU seconds from ``cpu_seconds()`` per wall second. Counting running commands
    instead would heat the phone while an idle runner server waits, so it never cooled.

    The battery level falls with load, or rises slowly while ``charging``."""

    def __init__(
        self,
        cpu_seconds,
        ambient: float = 27.0,
        rise: float = 12.0,
        tau: float = 60.0,
        time_scale: float = 1.0,
        level: float = 85.0,
        charging: bool = False,
    ):
        self.ambient, self.rise, self.tau, self.time_scale = ambient, rise, tau, time_scale
        self.cpu_seconds, self.charging = cpu_seconds, charging
        self.temp, self.level, self.busy = ambient, level, 0.0
        self._t = self._cpu_t = time.monotonic()
        self._cpu = 0.0
        self._lock = threading.Lock()

    def _advance(self) -> None:
        now = time.monotonic()
        # Readings closer than the window (one refresh reads the model three times; the throttle
        # reads it every period) keep the last load and skip the walk over the phone's processes.
        if now - self._cpu_t >= BUSY_WINDOW_S:
            cpu = self.cpu_seconds()
            self.busy = min(max(cpu - self._cpu, 0.0) / (now - self._cpu_t), 2.0)
            self._cpu, self._cpu_t = cpu, now
        dt, self._t = (now - self._t) * self.time_scale, now
        target = self.ambient + self.rise * self.busy
        self.temp = target + (self.temp - target) * math.exp(-dt / self.tau)
        if self.charging:  # % per device second: a USB port's 500 mA, about 3 hours from empty
            self.level = min(100.0, self.level + dt * 0.01)
        else:
            self.level = max(5.0, self.level - dt * (0.02 if self.busy > 0.1 else 0.002))

    def snapshot(self) -> tuple[float, float, float]:
        with self._lock:
            self._advance()
            return self.temp, self.level, self.busy


def _cpu_seconds(proc) -> float:
    """User + system CPU seconds of a process, its waited-for children and its live descendants."""
    import psutil

    try:
        top = psutil.Process(proc.pid)
        t = top.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in top.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0.0


class DeviceState:
    """Profile, sandbox and thermal state shared by every connection to one emulated device.

    By default the phone discharges (as one on adb over Wi-Fi); ``charging`` plugs it in. With the
    profile's ``emulated.throttle`` trips, a hot phone throttles: its clocks read lower and its
    programs really get that share of the CPU (``thermal.py``)."""

    def __init__(
        self,
        profile: dict,
        root: Path,
        time_scale: float = 1.0,
        arch: str = "x86_64",
        log=print,
        charging: bool = False,
    ):
        self.profile, self.root, self.arch, self.charging = (
            profile,
            Path(root).resolve(),
            arch,
            charging,
        )
        if arch not in ARCHES:
            raise ValueError(f"unknown emulated CPU {arch!r}; choose one of {', '.join(ARCHES)}")
        emu = profile.get("emulated") or {}
        # The profile's RAM (8e9 bytes when it has none),
        # as /proc/meminfo counts it: kB of 1024 bytes.
        self.mem_total_kb = int(
            emu.get("mem_total_kb", (profile.get("memory_total_bytes") or 8_000_000_000) // 1024)
        )
        self.thermal = ThermalModel(
            self._cpu_seconds,
            time_scale=time_scale,
            ambient=float(emu.get("ambient_c", 27.0)),
            tau=float(emu.get("tau_s", 60.0)),
            charging=charging,
        )
        self.trips = TripPoints(emu)
        self.duty = DutyCycle(self.throttle_scale) if self.trips else None
        self.props = {str(k): str(v) for k, v in (profile.get("getprop") or {}).items()}
        self.props.setdefault(
            "ro.product.device", self.props.get("ro.product.name", profile.get("name", "emulated"))
        )
        self.props.setdefault("ro.serialno", "EMULATED0001")
        # Marks every record measured here as emulated: its timings are no phone's speed.
        self.props["ro.slm_bench.emulated"] = "1"
        if arch == "x86_64":  # runs host programs, the host's Python included (see AdbDevice)
            self.props["ro.slm_bench.host_python"] = "1"
        # The profile's CPU, if it has one, mapped onto the host CPUs the adbd may run on. On
        # aarch64 its programs run on the qemu CPU model closest to the profile's features, and
        # /proc/cpuinfo claims only the features that model executes.
        listed = (profile.get("cpu") or {}).get("features") or []
        self.qemu_cpu = userland.qemu_cpu_for(listed) if arch == "aarch64" else None
        self.cpu = (
            cpu.EmulatedCpu(
                profile["cpu"],
                os.sched_getaffinity(0),
                userland.executable_features(listed, self.qemu_cpu) if self.qemu_cpu else None,
            )
            if profile.get("cpu")
            else None
        )
        if self.qemu_cpu:
            self.props["ro.slm_bench.qemu_cpu"] = self.qemu_cpu
        self.sandboxed = _SANDBOXED + (cpu.SANDBOXED if self.cpu else ())
        self._path_re = _path_re(self.sandboxed)
        if self.cpu:
            self.props["ro.slm_bench.cpu_map"] = self.cpu.cpu_map()
        self.processes: set[subprocess.Popen] = set()
        self._reaped_cpu = 0.0
        self._lock = threading.Lock()
        for folder in (
            "data/local/tmp",
            "sdcard/Download",
            "proc",
            ".emulated/bin",
            "sys/class/power_supply/battery",
        ):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(THERMAL_ZONES):
            (self.root / f"sys/class/thermal/thermal_zone{i}").mkdir(parents=True, exist_ok=True)
            (self.root / f"sys/class/thermal/thermal_zone{i}/type").write_text(name + "\n")
        (self.root / "proc/meminfo").write_text(self.meminfo())
        (self.root / ".emulated/getprop.txt").write_text(self.getprop(None))
        if arch == "aarch64":
            arm64.populate(self.root, log)
        bin_dir = self.root / ".emulated/bin"
        shell = arm64.SHELL if arch == "aarch64" else "/bin/sh"
        _script(
            bin_dir / "getprop",
            shell,
            '[ $# -eq 0 ] && exec cat "$D/getprop.txt"\n'
            'grep -F "[$1]: [" "$D/getprop.txt" | sed "s/^[^:]*: \\[\\(.*\\)\\]$/\\1/" '
            '| grep . || echo "${2:-}"\n',
        )
        _script(
            bin_dir / "dumpsys",
            shell,
            '[ "$1" = battery ] && exec cat "$D/battery.txt"\n'
            'echo "Can\'t find service: $1"; exit 1\n',
        )
        if self.cpu:
            self.cpu.write_files(self.root)
            _script(bin_dir / "taskset", shell, self.cpu.taskset_body(self._host_taskset(log)))
        else:  # a storage folder kept from a phone whose profile had a CPU
            (bin_dir / "taskset").unlink(missing_ok=True)
        self.refresh()

    def _host_taskset(self, log) -> list[str]:
        """The taskset the phone's one execs: util-linux's on x86_64; on aarch64 the chroot's
        busybox applet (1.35 takes ``-c LIST`` and ``-p``, as the phone's script uses it),
        renamed so that the phone's shell finds the script (``cpu.free_busybox_taskset``)."""
        if self.arch == "aarch64":
            return cpu.free_busybox_taskset(self.root, log)
        host = shutil.which("taskset")
        if host is None:
            raise UserError(
                "the emulated phone's taskset needs the host's (util-linux); "
                "install it: apt-get install -y util-linux"
            )
        return [host]

    # -- answers -------------------------------------------------------------------------------
    def getprop(self, key: str | None, default: str = "") -> str:
        if key is None:
            return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items()))
        return self.props.get(key, default) + "\n"

    def meminfo(self) -> str:
        total = self.mem_total_kb
        rows = {
            "MemTotal": total,
            "MemFree": total * 15 // 100,
            "MemAvailable": total * 52 // 100,
            "Buffers": total // 200,
            "Cached": total * 30 // 100,
            "SwapCached": 0,
            "SwapTotal": 8_388_604,
            "SwapFree": 6_291_452,
        }
        return "".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in rows.items())

    def battery(self) -> str:
        """dumpsys battery: status 2 (BATTERY_STATUS_CHARGING) on USB, else 3 (DISCHARGING)."""
        temp, level, _ = self.thermal.snapshot()
        usb, status, amps, volts = (
            ("true", 2, 500000, 5000000) if self.charging else ("false", 3, 0, 0)
        )
        return (
            f"Current Battery Service state:\n  AC powered: false\n  USB powered: {usb}\n"
            f"  Wireless powered: false\n  Dock powered: false\n  Max charging current: {amps}\n"
            f"  Max charging voltage: {volts}\n  Charging counter: {int(level * 38870)}\n"
            f"  status: {status}\n  health: 2\n  present: true\n  level: {int(level)}\n"
            f"  scale: 100\n  voltage: {int(3700 + 5 * level)}\n"
            f"  temperature: {round(temp * 10)}\n  technology: Li-ion\n"
        )

    def zone_temps(self) -> list[int]:
        temp, _, busy = self.thermal.snapshot()
        extra = {"BIG": 14.0, "MID": 11.0, "LITTLE": 8.0, "G3D": 6.0, "NPU": 4.0, "battery": 0.0}
        return [
            round((temp + 2.0 + extra[z] * min(busy, 2) / 2 if z != "battery" else temp) * 1000)
            for z in THERMAL_ZONES
        ]

    def cpu_emulation(self) -> str | None:
        """How the phone's cores are emulated, in words (None: the profile has no CPU)."""
        return self.cpu.describe() if self.cpu else None

    def cur_freq_khz(self, core: int) -> int:
        """A core's scaling_cur_freq: its maximum, times the throttle's scale when throttled."""
        return round(self.cpu.max_khz(core) * self.trips.scale)

    def throttle_scale(self) -> float:
        """The share of its speed the CPU runs at now, from the hottest CPU zone (BIG) and the
        trips; 1.0 for a profile without them."""
        if not self.trips:
            return 1.0
        return self.trips.update(self.zone_temps()[THERMAL_ZONES.index("BIG")] / 1000)

    def refresh(self) -> None:
        """Rewrite the dynamic files (temperatures, battery, CPU clocks) from the thermal model."""
        self.throttle_scale()  # a phone with no program running cools, and its clocks recover, too
        if self.cpu:
            for core in range(self.cpu.n):
                self.cpu.write_cur_freq(self.root, core, self.cur_freq_khz(core))
            self.cpu.clean_records(self.root)
        for i, milli in enumerate(self.zone_temps()):
            (self.root / f"sys/class/thermal/thermal_zone{i}/temp").write_text(f"{milli}\n")
        text = self.battery()
        (self.root / ".emulated/battery.txt").write_text(text)
        fields = dict(line.strip().split(": ", 1) for line in text.splitlines()[1:])
        ps = self.root / "sys/class/power_supply/battery"
        _, _, busy = self.thermal.snapshot()
        # Discharge current (uA, negative = draining) grows
        # with load, as a phone's fuel gauge reports.
        # Plugged in, the charger's 500 mA (dumpsys's maximum) comes in on top.
        current_ua = -round(250_000 + 1_100_000 * min(busy, 2)) + (500_000 if self.charging else 0)
        voltage_uv = int(fields["voltage"]) * 1000
        status = "Charging" if self.charging else "Discharging"
        for name, value in (
            ("capacity", fields["level"]),
            ("temp", fields["temperature"]),
            ("status", status),
            ("current_now", str(current_ua)),
            ("voltage_now", str(voltage_uv)),
        ):
            (ps / name).write_text(value + "\n")

    # -- paths ---------------------------------------------------------------------------------
    def host_path(self, path: str) -> Path:
        """A phone path (as sync sends it) -> the file in the sandbox; never outside it."""
        p = posixpath.normpath("/" + path)
        for alias, canonical in _ALIASES.items():
            if p == alias or p.startswith(alias + "/"):
                p = canonical + p[len(alias) :]
        return self.root / p.lstrip("/")

    def rewrite(self, command: str) -> str:
        return self._path_re.sub(
            lambda m: str(self.root) + _ALIASES.get(m.group(1), m.group(1)), command
        )

    def builtin(self, command: str) -> str | None:
        """The answer to a command that needs no process, or None."""
        if self.cpu and (status := _STATUS_RE.match(command)):
            # from the host: arm64 has no procfs
            return self.cpu.proc_status(self.root, int(status[1]))
        if counters := _STAT_RE.match(command):
            return _proc_stat(counters[1].split(), quiet=bool(counters[2]))
        try:
            words = shlex.split(command)
        except ValueError:
            return None
        if not words or any(c in command for c in ";|&<>`$()"):
            return None
        if words[0] == "getprop" and len(words) <= 3:
            return self.getprop(
                words[1] if len(words) > 1 else None, words[2] if len(words) > 2 else ""
            )
        if words == ["dumpsys", "battery"]:
            return self.battery()
        if (
            words[0] == "cat"
            and len(words) > 1
            and all(w.startswith(("/proc/", "/sys/")) for w in words[1:])
        ):
            self.refresh()
            out = []
            for word in words[1:]:
                matches = (
                    sorted(glob.glob(str(self.host_path(word)))) if self._in_sandbox(word) else []
                )
                if not matches:
                    return None  # let the real cat produce the real error
                out += [Path(m).read_text() for m in matches]
            return "".join(out)
        return None

    def _in_sandbox(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.sandboxed)

    def popen(self, command: str, merge_stderr: bool) -> subprocess.Popen:
        self.refresh()
        if self.arch == "aarch64":
            argv, env = arm64.command(self.root, command, self.qemu_cpu)
            env["PATH"] = f"/.emulated/bin:{env['PATH']}"
            return self._start(argv, env, merge_stderr)
        env = dict(os.environ)
        env.update(
            PATH=f"{self.root}/.emulated/bin:{env.get('PATH', '/usr/bin:/bin')}",
            HOME=str(self.root),
            TMPDIR=f"{self.root}/data/local/tmp",
            EXTERNAL_STORAGE=f"{self.root}/sdcard",
            ANDROID_EMULATED_ROOT=str(self.root),
            ADBD_EMULATED_DIR=f"{self.root}/.emulated",
        )
        return self._start(
            ["/bin/sh", "-c", self.rewrite(command)] if command else ["/bin/sh"], env, merge_stderr
        )

    def _start(self, argv: list[str], env: dict[str, str], merge_stderr: bool) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv,
            cwd=self.root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True,
            bufsize=0,
        )
        with self._lock:
            self.processes.add(proc)
        if self.duty:
            self.duty.add(proc.pid)  # a session leader: its process group is its pid
        return proc

    def _cpu_seconds(self) -> float:
        """CPU seconds the running programs have used so far, plus those of programs already
        reaped (so that a program's exit does not read as negative load)."""
        with self._lock:
            procs = list(self.processes)
        return self._reaped_cpu + sum(_cpu_seconds(p) for p in procs)

    def reap(self, proc: subprocess.Popen) -> int:
        spent = _cpu_seconds(proc)  # read before wait(): afterwards the process is gone
        if self.duty:  # continued, and never signalled again, before its pid can be reused
            self.duty.forget(proc.pid)
        code = proc.wait()
        with self._lock:
            if proc in self.processes:
                self.processes.discard(proc)
                self._reaped_cpu += spent
        return code

    def kill_all(self) -> None:
        with self._lock:
            procs = list(self.processes)
        for proc in procs:
            _kill(proc)
        if self.duty:
            self.duty.resume()  # SIGKILL ends stopped processes too; this leaves none stopped

    def close(self) -> None:
        """The device stops: end the throttle (continuing everything), kill every program."""
        if self.duty:
            self.duty.close()
        self.kill_all()


def _proc_stat(pid_paths: list[str], quiet: bool) -> str | None:
    """/proc/stat and /proc/PID/stat from the host (the aarch64 phone's chroot has no procfs; its
    pids are the host's). A missing file is skipped when stderr is discarded; otherwise None, for
    the real cat's error."""
    out = []
    for path in ["/proc/stat", *pid_paths]:
        try:
            out.append(Path(path).read_text())
        except OSError:
            if not quiet:
                return None
    return "".join(out)


def _script(path: Path, shell: str, body: str) -> None:
    path.write_text(f"#!{shell}\n" + 'D="${ADBD_EMULATED_DIR:-$(dirname "$0")/..}"\n' + body)
    path.chmod(0o755)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------------------------------------
# shell
# ---------------------------------------------------------------------------------------------
ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW = 0, 1, 2, 3, 4, 5


def _packet(kind: int, data: bytes) -> bytes:
    return struct.pack("<BI", kind, len(data)) + data


def shell_service(state: DeviceState, command: str, v2: bool):
    """The handler for ``shell:CMD`` / ``exec:CMD`` (raw) or ``shell,v2,...:CMD`` (packets)."""

    def serve(stream: Stream) -> None:
        answer = state.builtin(command) if command else None
        if answer is not None:
            data = answer.encode()
            stream.write(_packet(ID_STDOUT, data) + _packet(ID_EXIT, b"\0") if v2 else data)
            return
        proc = state.popen(command, merge_stderr=not v2)
        stream.on_close(lambda: _kill(proc))

        def pump(fd, kind):
            try:
                while chunk := os.read(fd.fileno(), 64 * 1024):
                    stream.write(_packet(kind, chunk) if v2 else chunk)
            except (StreamClosed, OSError):
                _kill(proc)

        def feed_stdin():
            try:
                while True:
                    if not v2:
                        data = stream.read()
                        if not data:
                            break
                        proc.stdin.write(data)
                        continue
                    kind, length = struct.unpack("<BI", stream.read_exact(5))
                    data = stream.read_exact(length)
                    if kind == ID_STDIN:
                        proc.stdin.write(data)
                    elif kind == ID_CLOSE_STDIN:
                        break
            except (StreamClosed, OSError, ValueError):
                pass
            try:
                proc.stdin.close()
            except OSError:
                pass

        threading.Thread(target=feed_stdin, daemon=True).start()
        pumps = [threading.Thread(target=pump, args=(proc.stdout, ID_STDOUT), daemon=True)]
        if v2:
            pumps.append(threading.Thread(target=pump, args=(proc.stderr, ID_STDERR), daemon=True))
        for t in pumps:
            t.start()
        for t in pumps:
            t.join()
        code = state.reap(proc)
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal, as sh reports
        if v2:
            stream.write(_packet(ID_EXIT, bytes([code & 0xFF])))

    return serve


# ---------------------------------------------------------------------------------------------
# tcp:PORT (what `adb forward tcp:LOCAL tcp:PORT` opens on the device)
# ---------------------------------------------------------------------------------------------
def tcp_service(spec: str):
    """The handler for ``tcp:PORT`` or ``tcp:HOST:PORT``: a connection to that port on the phone
    (its loopback is the host's), bytes piped both ways until either side closes. As adbd does,
    a port nobody listens on refuses the stream (the host's forwarded socket then closes)."""
    host, _, port = spec.rpartition(":")
    if not port.isdigit():
        return None
    try:
        sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=5)
    except OSError:
        return None
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def serve(stream: Stream) -> None:
        stream.on_close(lambda: _shut(sock))

        def to_host():  # phone socket -> adb stream
            try:
                while data := sock.recv(256 * 1024):
                    stream.write(data)
            except (OSError, StreamClosed):
                pass
            stream.close()

        pump = threading.Thread(target=to_host, daemon=True)
        pump.start()
        try:
            while data := stream.read():  # adb stream -> phone socket; b"" once the host closed it
                sock.sendall(data)
        except OSError:
            pass
        _shut(sock)
        pump.join()
        sock.close()

    return serve


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# sync (adb push / pull / ls / stat)
# ---------------------------------------------------------------------------------------------
SYNC_DATA_MAX = 64 * 1024
# id error dev ino mode nlink uid gid size atime mtime ctime
_STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")


def _stat_v2(ident: bytes, st: os.stat_result | None, error: int = 0) -> bytes:
    if st is None:
        return _STAT_V2.pack(ident, error, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return _STAT_V2.pack(
        ident,
        0,
        st.st_dev,
        st.st_ino,
        st.st_mode,
        st.st_nlink,
        2000,
        2000,
        st.st_size,
        int(st.st_atime),
        int(st.st_mtime),
        int(st.st_ctime),
    )


def _status(ok: bool, message: str = "") -> bytes:
    data = message.encode()
    return (b"OKAY" if ok else b"FAIL") + struct.pack("<I", len(data)) + data


def sync_service(state: DeviceState):
    def serve(stream: Stream) -> None:
        while True:
            try:
                ident, length = struct.unpack("<4sI", stream.read_exact(8))
            except StreamClosed:
                return
            if ident == b"QUIT":
                return
            if length > 4096:
                stream.write(_status(False, "path too long"))
                return
            path = stream.read_exact(length).decode("utf-8", "surrogateescape")
            if ident == b"STAT":  # v1 is an lstat; a missing file is all zeros
                try:
                    st = os.lstat(state.host_path(path))
                    stream.write(
                        struct.pack(
                            "<4sIII",
                            b"STAT",
                            st.st_mode,
                            st.st_size & 0xFFFFFFFF,
                            int(st.st_mtime) & 0xFFFFFFFF,
                        )
                    )
                except OSError:
                    stream.write(struct.pack("<4sIII", b"STAT", 0, 0, 0))
            elif ident in (b"STA2", b"LST2"):
                try:
                    fn = os.stat if ident == b"STA2" else os.lstat
                    stream.write(_stat_v2(ident, fn(state.host_path(path))))
                except OSError as e:
                    stream.write(_stat_v2(ident, None, e.errno or 2))
            elif ident in (b"LIST", b"LIS2"):
                stream.write(_list(state.host_path(path), v2=ident == b"LIS2"))
            elif ident == b"SEND":
                _receive_file(state, stream, path)
            elif ident == b"RECV":
                try:
                    with open(state.host_path(path), "rb") as f:
                        batch = bytearray()  # several DATA messages per WRTE: fewer round trips
                        while chunk := f.read(SYNC_DATA_MAX):
                            batch += b"DATA" + struct.pack("<I", len(chunk)) + chunk
                            if len(batch) >= stream.conn.max_payload - SYNC_DATA_MAX:
                                stream.write(bytes(batch))
                                batch.clear()
                    stream.write(bytes(batch) + b"DONE" + struct.pack("<I", 0))
                except OSError as e:
                    stream.write(_status(False, f"remote open failed: {e.strerror or e}"))
            else:
                stream.write(_status(False, f"unknown sync command {ident!r}"))
                return

    return serve


def _list(folder: Path, v2: bool) -> bytes:
    out = bytearray()
    try:
        names = [".", "..", *sorted(os.listdir(folder))]
    except OSError as e:
        names = []
        if v2:  # v2 reports the error in the final entry's place; v1 just ends
            return bytes(_stat_v2(b"DONE", None, e.errno or 2)) + struct.pack("<I", 0)
    for name in names:
        try:
            st = os.lstat(folder / name)
        except OSError:
            continue
        raw = os.fsencode(name)
        if v2:
            out += _stat_v2(b"DNT2", st)[:] + struct.pack("<I", len(raw)) + raw
        else:
            out += (
                struct.pack(
                    "<4sIIII",
                    b"DENT",
                    st.st_mode,
                    st.st_size & 0xFFFFFFFF,
                    int(st.st_mtime) & 0xFFFFFFFF,
                    len(raw),
                )
                + raw
            )
    out += (
        (_stat_v2(b"DONE", None) + struct.pack("<I", 0))
        if v2
        else struct.pack("<4sIIII", b"DONE", 0, 0, 0, 0)
    )
    return bytes(out)


def _receive_file(state: DeviceState, stream: Stream, spec: str) -> None:
    """SEND "path,mode", then DATA chunks and DONE(mtime); answer OKAY or FAIL after DONE."""
    path, _, mode_text = spec.rpartition(",")
    if not path:
        path, mode_text = spec, "33188"
    mode = int(mode_text or "33188")
    target = state.host_path(path)
    error, chunks, tmp, out = "", [], target.with_name(f".{target.name}.adb-part"), None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        if not stat.S_ISLNK(mode):
            out = open(tmp, "wb")
    except OSError as e:
        error = f"couldn't create file: {e.strerror or e}"
    while True:  # drain to DONE even after an error, so the stream stays in step
        ident, length = struct.unpack("<4sI", stream.read_exact(8))
        if ident == b"DONE":
            mtime = length
            break
        if ident != b"DATA" or length > SYNC_DATA_MAX:
            if out:
                out.close()
                tmp.unlink(missing_ok=True)
            stream.write(_status(False, f"invalid data message {ident!r}"))
            raise StreamClosed("sync")
        data = stream.read_exact(length)
        if out and not error:
            try:
                out.write(data)
            except OSError as e:
                error = f"write failed: {e.strerror or e}"
        elif stat.S_ISLNK(mode):
            chunks.append(data)
    try:
        if out:
            out.close()
            if error:
                raise OSError(error)
            os.chmod(tmp, stat.S_IMODE(mode) or 0o644)
            os.replace(tmp, target)
        elif not error:
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink(b"".join(chunks).rstrip(b"\0").decode(), target)
        if not error:
            os.utime(target, (mtime, mtime), follow_symlinks=False)
    except OSError as e:
        error = error or f"{e.strerror or e}"
        tmp.unlink(missing_ok=True)
    stream.write(_status(not error, error))
