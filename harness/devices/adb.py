"""Android devices over ADB, through adbutils only (no subprocess calls to the adb binary).

The device runs the same runner as the desktop (``python -m harness.runner ... --serve``) behind
``adb shell``: its stdin carries the run commands and its stdout the JSON records. On a stock
phone that needs a Python (e.g. Termux's, set with SLM_BENCH_DEVICE_PYTHON) or one of the native
runners of the runner-adapter issue; the emulated Galaxy S24 (``harness.devices.emulated``) runs
the host's Python inside its sandbox.
"""

from __future__ import annotations

import json
import os
import posixpath
import shlex
import sys
import time
from pathlib import Path

from harness.devices.base import Device, DeviceGone, RunnerProcess
from harness.devices.placement import Placement
from harness.devices.profiles import get_profile, match_profile
from harness.devices.topology import Topology
from harness.errors import UserError
from harness.results.schema import DeviceInfo, DeviceState

REMOTE_ROOT = "/data/local/tmp/slm-bench"
KIT_ROOT = f"{REMOTE_ROOT}/kit"  # the TVM kit's layers, one folder each (harness.kits.tvm_kit)
RETRIES = 3  # reconnect attempts for a shell command before the device counts as gone
RETRY_DELAY_S = 1.0
PUSH_PROGRESS_MIN_BYTES = 8_000_000  # pushes smaller than this show no progress
REPO = Path(__file__).resolve().parents[2]
PROPS = (
    "ro.slm_bench.emulated",
    "ro.slm_bench.host_python",
    "ro.slm_bench.cpu_map",
    "ro.product.model",
    "ro.product.brand",
    "ro.product.manufacturer",
    "ro.soc.model",
    "ro.soc.manufacturer",
    "ro.build.version.release",
    "ro.build.version.sdk",
    "ro.product.cpu.abi",
    "ro.hardware.egl",
)


def adb_client(adb_server: str | None):
    import adbutils

    host, port = "127.0.0.1", 5037
    if adb_server:
        host, _, p = adb_server.rpartition(":")
        if not host or not p.isdigit():
            raise UserError(f"--adb-server must be HOST:PORT, got {adb_server!r}")
        port = int(p)
    return adbutils.AdbClient(host=host, port=port)


def list_serials(adb_server: str | None) -> list[str]:
    import adbutils

    client = adb_client(adb_server)
    try:
        return [d.serial for d in client.device_list()]
    except (adbutils.AdbError, OSError) as exc:
        where = adb_server or "127.0.0.1:5037"
        raise UserError(
            f"cannot reach the adb server at {where} ({exc}); start it with `adb start-server` or"
            " pass --adb-server HOST:PORT"
        ) from None


class _CountingReader:
    """A file for ``sync.push`` to read that tells ``advance`` how many bytes each read gave:
    the bytes on the wire are the file's, unchanged."""

    def __init__(self, file, advance):
        self._file, self._advance = file, advance

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        if chunk:
            self._advance(len(chunk))
        return chunk

    def close(self) -> None:
        self._file.close()


class _ShellPipe:
    """The Popen surface RunnerProcess uses (stdin, stdout, poll, wait, kill) over an adb shell
    stream."""

    def __init__(self, connection):
        self._conn = connection
        sock = connection.conn
        # No read timeout: a request may compute for many minutes between two lines (a large
        # model at L=1000, or any model under emulation); a lost phone closes the stream instead.
        sock.settimeout(None)
        self.stdin = sock.makefile("w", encoding="utf-8", newline="\n")
        self.stdout = sock.makefile("r", encoding="utf-8", newline="\n")
        self._closed = False

    def poll(self):
        return -1 if self._closed else None  # shell v1 carries no exit code

    def wait(self, timeout=None):
        self.kill()
        return -1

    def kill(self):
        if not self._closed:
            self._closed = True
            for f in (self.stdin, self.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self._conn.close()


class AdbDevice(Device):
    def __init__(self, serial: str | None, adb_server: str | None = None):
        serials = list_serials(adb_server)
        if serial is None:
            if len(serials) != 1:
                found = ", ".join(serials) or "none"
                raise UserError(
                    f"--device adb needs exactly one attached device (found: {found}); pass"
                    " --device adb:SERIAL"
                )
            serial = serials[0]
        elif serial not in serials:
            raise UserError(
                f"device {serial} is not attached (attached: {', '.join(serials) or 'none'}); check"
                " `adb devices` or `adb connect HOST:PORT`"
            )
        self.serial, self.adb_server = serial, adb_server
        self.device = adb_client(adb_server).device(serial)
        self.props = self._getprops()
        self.profile = match_profile("adb", self.props) or get_profile("android-emulator")
        self.machine = self._shell("uname -m").strip()

    # -- facts -------------------------------------------------------------------------

    def _shell(self, cmd: str, timeout: float = 30) -> str:
        """One shell command, retried a bounded number of times: an adb server that restarts, or a
        Wi-Fi phone that drops for a moment, gets RETRIES reconnect attempts before DeviceGone."""
        import adbutils

        for attempt in range(RETRIES + 1):
            try:
                return self.device.shell(cmd, timeout=timeout)
            except adbutils.AdbTimeout:
                raise DeviceGone(
                    f"device {self.serial} did not answer `{cmd.split()[0]}` within {timeout:.0f}"
                    " s; check it and rerun the same command to resume"
                ) from None
            except (adbutils.AdbError, OSError) as exc:
                if attempt == RETRIES:
                    raise DeviceGone(
                        f"device {self.serial} stopped answering ({exc}); reconnect it and rerun"
                        " the same command to resume"
                    ) from None
                print(
                    f"adb: {self.serial} did not answer ({exc}); reconnecting"
                    f" ({attempt + 1}/{RETRIES})",
                    file=sys.stderr,
                )
                time.sleep(RETRY_DELAY_S)
                self._reconnect()
        raise AssertionError("unreachable")

    def _reconnect(self) -> None:
        import adbutils

        client = adb_client(self.adb_server)
        try:
            # a TCP device (Wi-Fi phone, emulated phone) must be re-connected
            if ":" in self.serial:
                client.connect(self.serial, timeout=5)
        except (adbutils.AdbError, OSError):
            pass  # the next attempt reports it
        self.device = client.device(self.serial)

    def _getprops(self) -> dict[str, str]:
        return {p: self._shell(f"getprop {shlex.quote(p)}").strip() for p in PROPS}

    @property
    def lock_name(self) -> str:
        """Serial and adb server: two hosts' emulated phones may both be 127.0.0.1:5600."""
        from harness.devices.lab import DEFAULT_SERVER

        return f"{self.serial}@{self.adb_server or DEFAULT_SERVER}"

    def info(self) -> DeviceInfo:
        p = self.props
        mem = _meminfo(self._shell("cat /proc/meminfo"))
        return DeviceInfo(
            serial=self.serial,
            model=p.get("ro.product.model", ""),
            brand=p.get("ro.product.brand", ""),
            soc=p.get("ro.soc.model", ""),
            os=(
                f"Android {p.get('ro.build.version.release', '?')} (SDK"
                f" {p.get('ro.build.version.sdk', '?')})"
            ),
            ram_bytes=mem.get("MemTotal"),
            profile=self.profile.name,
            abi=p.get("ro.product.cpu.abi", ""),
            gpu=p.get("ro.hardware.egl")
            or self.profile.gpu
            or "",  # the driver's name, else what the profile says the GPU is
            machine=self.machine,
            emulated=p.get("ro.slm_bench.emulated") == "1",
        )

    def state(self) -> DeviceState:
        battery = _battery(self._shell("dumpsys battery"))
        temps = [
            int(t) / 1000
            for t in self._shell("cat /sys/class/thermal/thermal_zone*/temp").split()
            if t.lstrip("-").isdigit()
        ]
        mem = _meminfo(self._shell("cat /proc/meminfo"))
        return DeviceState(
            battery_level=battery.get("level"),
            battery_temp_c=battery["temperature"] / 10 if "temperature" in battery else None,
            charging=battery.get("status") == 2
            if "status" in battery
            else None,  # BATTERY_STATUS_CHARGING
            cpu_temp_c=max(temps) if temps else None,
            thermal_zones_c=temps or None,
            mem_available_bytes=mem.get("MemAvailable"),
        )

    def topology(self) -> Topology:
        """Read from the phone: /sys/devices/system/cpu/{possible,online}, /proc/cpuinfo and each
        core's cpuinfo_max_freq (``grep .`` prints PATH:VALUE, so the glob's order does not
        matter)."""
        from harness.devices.topology import build_topology, freqs_from_grep

        base = "/sys/devices/system/cpu"
        freqs = freqs_from_grep(
            self._shell(f"grep . {base}/cpu[0-9]*/cpufreq/cpuinfo_max_freq 2>/dev/null")
        )
        source = "read from the device"
        if self.props.get("ro.slm_bench.cpu_map"):
            source = (
                f"emulated from the {self.profile.name} profile: phone core:host CPU"
                f" {self.props['ro.slm_bench.cpu_map']} (its taskset pins to those host CPUs;"
                " timings are the host's)"
            )
        return build_topology(
            self._shell(f"cat {base}/possible"),
            self._shell(f"cat {base}/online"),
            self._shell("cat /proc/cpuinfo"),
            freqs,
            source=source,
        )

    def cpu_features(self) -> set[str]:
        """One shell instead of topology()'s four: only /proc/cpuinfo counts here."""
        from harness.devices.topology import common_features

        return common_features(self._shell("cat /proc/cpuinfo"))

    def process_status(self, pid: int) -> str | None:
        out = self._shell(f"cat /proc/{int(pid)}/status 2>/dev/null")
        return out if "Cpus_allowed" in out else None

    def cpu_counters(self, pid: int | None) -> str:
        return self._shell(f"cat /proc/stat{f' /proc/{int(pid)}/stat' if pid else ''} 2>/dev/null")

    def cur_freqs(self) -> dict[int, int]:
        from harness.devices.topology import freqs_from_grep

        return freqs_from_grep(
            self._shell(
                "grep . /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq 2>/dev/null"
            )
        )

    def pin(self, command: str, placement: Placement) -> str:
        return f"taskset {placement.mask} {command}"

    def check_pinning(self, placement: Placement) -> None:
        """Refuse, before a runner starts, a mask the phone's taskset will not take (a core the
        kernel keeps offline or reserves): otherwise the runner would just never answer."""
        code, _, err = self.run(f"taskset {placement.mask} true", timeout=30)
        if code != 0:
            tail = (err.strip().splitlines() or [f"exit {code}"])[-1][:200]
            raise UserError(
                f"{self.serial} refused `taskset {placement.mask}` for cores"
                f" {'+'.join(placement.clusters)} ({tail}); pick cores it has online (`slm-bench"
                " devices` lists them) with --cores"
            )

    def power_watts(self) -> float | None:
        out = self._shell(
            "cat /sys/class/power_supply/battery/current_now"
            " /sys/class/power_supply/battery/voltage_now 2>/dev/null"
        ).split()
        if len(out) != 2 or not all(v.lstrip("-").isdigit() for v in out):
            return None
        current_ua, voltage_uv = (int(v) for v in out)
        return abs(current_ua) * 1e-6 * voltage_uv * 1e-6

    def oom_evidence(self) -> str:
        """The served runner's last stderr lines and what the low-memory killer logged: lmkd
        writes "Kill 'PROCESS' ... to free ..." to logcat, readable without root (dmesg is not)."""
        q = shlex.quote
        cmd = (
            f"tail -n 20 {q(REMOTE_ROOT + '/run/runner.log')} 2>/dev/null; logcat -d -t 2000"
            " 2>/dev/null | grep -i -E 'lowmemorykiller|lmkd|out of memory|oom' | tail -n 5"
        )
        import adbutils

        try:  # once, without _shell's reconnects: a phone that is gone has nothing to tell
            return self.device.shell(cmd, timeout=20)
        except (adbutils.AdbError, OSError):  # AdbTimeout is an AdbError
            return ""

    # -- running -----------------------------------------------------------------------

    def deploy(self, bundle: Path) -> str:
        """Push the bundle against its sha256 manifest: files whose hash on the device already
        matches are not sent again, so a second run pushes 0 bytes. ``manifest.json`` goes last
        and marks a complete copy; an interrupted push leaves a file whose hash differs, which
        the next deploy sends again."""
        self.bytes_pushed = self.install_kit() if self.python_runner() == "kit" else 0
        manifest = json.loads((bundle / "manifest.json").read_text())
        remote = posixpath.join(REMOTE_ROOT, "bundles", bundle.name)
        on_device = self._remote_hashes(remote, list(manifest["files"]))
        needed = sum(
            (bundle / n).stat().st_size
            for n, d in manifest["files"].items()
            if on_device.get(n) != d
        )
        free = self.free_bytes()
        if free is not None and needed > free:
            raise UserError(
                f"device {self.serial} has {free / 1e6:.0f} MB free under {REMOTE_ROOT}, the bundle"
                f" needs {needed / 1e6:.0f} MB; free space or run `slm-bench devices clean --device"
                f" adb:{self.serial}`"
            )
        todo = [n for n, d in sorted(manifest["files"].items()) if on_device.get(n) != d]
        with self._pushing(needed, f"the bundle ({len(todo)} files)") as advance:
            for name in todo:
                self._push(bundle / name, posixpath.join(remote, name), advance)
                self.bytes_pushed += (bundle / name).stat().st_size
        self._push(bundle / "manifest.json", posixpath.join(remote, "manifest.json"))
        mismatched = [
            n
            for n, d in self._remote_hashes(remote, list(manifest["files"])).items()
            if d != manifest["files"][n]
        ]
        if mismatched or len(self._remote_hashes(remote, list(manifest["files"]))) != len(
            manifest["files"]
        ):
            raise DeviceGone(
                f"bundle files on {self.serial} do not match their sha256 after pushing"
                f" ({', '.join(mismatched[:3]) or 'missing files'}); rerun to push again"
            )
        return remote

    def install_kit(self) -> int:
        """Put the harness's TVM kit on the phone (built on the host on first use); returns the
        bytes pushed. Each layer is a tar whose sha256 is checked on the phone before it is
        unpacked; a layer counts as installed only once its marker holds that sha256, so an
        interrupted push or unpack is redone, never trusted."""
        from harness.kits.tvm_kit import ABI, build_kit, load_kit

        if self.machine != "aarch64":
            raise UserError(
                f"the TVM kit is built for {ABI} (aarch64) but {self.serial} runs"
                f" {self.machine or 'an unknown CPU'} programs; use a native runner built for it"
                " (--runner-bin)"
            )
        kit = load_kit(build_kit())
        q = shlex.quote
        markers = self._shell(
            f"cat {' '.join(q(f'{KIT_ROOT}/{n}/.sha256') for n in kit['layers'])} 2>/dev/null"
        ).split()
        todo = {n: d for n, d in kit["layers"].items() if d not in markers}
        # the tar and what it unpacks to
        needed = sum(Path(kit["paths"][n]).stat().st_size * 2 for n in todo)
        free = self.free_bytes()
        if todo and free is not None and needed > free:
            raise UserError(
                f"device {self.serial} has {free / 1e6:.0f} MB free under {REMOTE_ROOT}, the TVM"
                f" kit needs {needed / 1e6:.0f} MB; free space or run `slm-bench devices clean"
                f" --device adb:{self.serial}`"
            )
        sent = 0
        tars = sum(Path(kit["paths"][n]).stat().st_size for n in todo)
        with self._pushing(tars, "the TVM kit", "installing") as advance:  # push and unpack
            for name, digest in todo.items():
                tar, folder = f"{KIT_ROOT}/{name}.tar", f"{KIT_ROOT}/{name}"
                self._push(Path(kit["paths"][name]), tar, advance)
                sent += Path(kit["paths"][name]).stat().st_size
                if self._remote_hashes(KIT_ROOT, [f"{name}.tar"]).get(f"{name}.tar") != digest:
                    raise DeviceGone(
                        f"the kit layer {name}.tar on {self.serial} does not match its sha256 after"
                        " pushing; rerun to push it again"
                    )
                code, _, err = self.run(
                    f"rm -rf {q(folder)} && mkdir -p {q(folder)} && tar -xf {q(tar)} -C {q(folder)}"
                    f" && rm {q(tar)} && echo {digest} > {q(folder + '/.sha256')}",
                    timeout=900,
                )
                if code != 0:
                    raise UserError(
                        f"unpacking the kit layer {name} on {self.serial} failed"
                        f" ({err.strip()[:200] or f'exit {code}'}); free space and rerun"
                    )
        return sent

    def free_bytes(self) -> int | None:
        """Free bytes on the filesystem holding the harness's folder (``df -k``), if readable."""
        self._shell(f"mkdir -p {shlex.quote(REMOTE_ROOT)}")
        lines = self._shell(f"df -k {shlex.quote(REMOTE_ROOT)}").splitlines()
        fields = lines[-1].split() if len(lines) >= 2 else []
        return int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None

    def clean(self) -> None:
        """Remove everything the harness put on the device."""
        self._shell(f"rm -rf {shlex.quote(REMOTE_ROOT)}")

    def _remote_hashes(self, remote: str, names: list[str]) -> dict[str, str]:
        """name -> sha256 of the files present on the device (toybox sha256sum)."""
        paths = " ".join(shlex.quote(posixpath.join(remote, n)) for n in names)
        out = self._shell(f"sha256sum {paths} 2>/dev/null", timeout=300)
        lines = [line.strip().partition("  ") for line in out.splitlines()]
        found = {}
        for name in names:
            # match by suffix: an emulated device prints its sandbox path in front of the remote one
            want = posixpath.join(remote, name)
            for digest, _, path in lines:
                if path.endswith(want):
                    found[name] = digest
                    break
        return found

    def _pushing(self, total: int, what: str, doing: str = "pushing"):
        """A meter for pushes of ``total`` bytes (``_push``'s ``advance``): a bar or plain lines
        from PUSH_PROGRESS_MIN_BYTES up, silent below."""
        from harness.progress import meter

        to = "to" if doing == "pushing" else "on"
        return meter(total, f"{doing} {what} {to} {self.serial}", min_total=PUSH_PROGRESS_MIN_BYTES)

    def _push(self, src: Path, dst: str, advance=None) -> None:
        """Push one file; ``advance(n)`` (a progress meter) hears of each chunk sent."""
        import adbutils

        self._shell(f"mkdir -p {shlex.quote(posixpath.dirname(dst))}")
        try:
            if advance is None:
                self.device.sync.push(str(src), dst)
            else:  # adbutils' push takes no callback: it reads a file object we count from
                with open(src, "rb") as f:
                    self.device.sync.push(_CountingReader(f, advance), dst)
        except (adbutils.AdbError, OSError) as exc:
            if "No space" in str(exc) or "ENOSPC" in str(exc):
                raise UserError(
                    f"device {self.serial} is full while pushing {src.name}; free space under"
                    f" {REMOTE_ROOT}"
                ) from None
            raise DeviceGone(
                f"pushing {src.name} to {self.serial} failed ({exc}); reconnect and rerun to resume"
            ) from None

    # -- native runners (harness.runners) ------------------------------------------------

    def run(self, cmd: str, timeout: float = 600) -> tuple[int, str, str]:
        """One command to completion over shell protocol v2: (exit code, stdout, stderr)."""
        import adbutils

        try:
            result = self.device.shell2(cmd, timeout=timeout, v2=True)
        except adbutils.AdbTimeout:
            raise DeviceGone(
                f"device {self.serial} did not finish `{cmd.split()[0]}` within {timeout:.0f} s;"
                " check it and rerun the same command to resume"
            ) from None
        except (adbutils.AdbError, OSError) as exc:
            raise DeviceGone(
                f"device {self.serial} stopped answering ({exc}); reconnect it and rerun the same"
                " command to resume"
            ) from None
        return result.returncode, result.stdout, result.stderr

    def stage(self, files: dict[str, Path], remote: str) -> int:
        """Push ``name -> local file`` into the folder ``remote``, skipping files whose sha256
        on the device already matches; returns the bytes sent."""
        from harness.cache import file_sha256

        on_device = self._remote_hashes(remote, list(files))
        todo = {n: src for n, src in sorted(files.items()) if on_device.get(n) != file_sha256(src)}
        sent = 0
        with self._pushing(sum(src.stat().st_size for src in todo.values()), "files") as advance:
            for name, src in todo.items():
                self._push(src, posixpath.join(remote, name), advance)
                sent += src.stat().st_size
        return sent

    def forward(self, remote_port: int) -> int:
        """``adb forward tcp:LOCAL tcp:REMOTE`` with a free local port; returns LOCAL."""
        import adbutils

        try:
            return self.device.forward_port(remote_port)
        except (adbutils.AdbError, OSError) as exc:
            raise DeviceGone(
                f"adb forward to port {remote_port} on {self.serial} failed ({exc}); reconnect the"
                " device and rerun"
            ) from None

    def unforward(self, local_port: int) -> None:
        import adbutils

        try:
            self.device.forward_remove(f"tcp:{local_port}", raise_non_found=False)
        except (adbutils.AdbError, OSError):
            pass  # the device is gone, and its forwards with it

    def spawn(self, cmd: str):
        """Start a long-running command (a server) behind an open shell stream; closing the
        returned stream ends it (adbd hangs up its process group)."""
        import adbutils

        try:
            return self.device.shell(cmd, stream=True)
        except (adbutils.AdbError, OSError) as exc:
            raise DeviceGone(
                f"cannot start `{cmd.split()[0]}` on {self.serial} ({exc}); reconnect the device"
                " and rerun"
            ) from None

    def python_runner(self) -> str | None:
        """How harness.runner starts here: "device" (a Python on the phone), "host" (the emulated
        x86_64 phone runs the host's), "kit" (a stock ARM64 phone: the harness pushes its TVM
        kit, harness.kits.tvm_kit), or None (no way: only native runners)."""
        if os.environ.get("SLM_BENCH_DEVICE_PYTHON"):
            return "device"
        if self.props.get("ro.slm_bench.host_python") == "1":
            return "host"
        if self.profile.device_python:
            return "device"
        from harness.kits.tvm_kit import ABI

        if self.props.get("ro.product.cpu.abi") == ABI and self.machine == "aarch64":
            return "kit"
        return None

    def runner_python(self) -> str:
        """The Python that runs harness.runner on this device: SLM_BENCH_DEVICE_PYTHON, else the
        host's for the emulated x86_64 phone (it runs host programs in its sandbox), else the
        profile's."""
        kind = self.python_runner()
        if kind == "device":
            return os.environ.get("SLM_BENCH_DEVICE_PYTHON") or self.profile.device_python
        if kind == "host":
            return sys.executable
        raise UserError(
            f"{self.serial} ({self.profile.name}) has no Python runner configured: install Python"
            " on the phone (e.g. Termux) and set SLM_BENCH_DEVICE_PYTHON (and"
            " SLM_BENCH_DEVICE_PYTHONPATH to a pushed copy of harness/), or use a native runner"
            " (docs/phones.md)"
        )

    def start_runner(
        self,
        bundle_path: str,
        prompts: Path,
        template: dict,
        max_new_tokens: int,
        mode: str,
        log_path: Path,
        placement: Placement,
    ) -> RunnerProcess:
        work = posixpath.join(REMOTE_ROOT, "run")
        tpl = Path(log_path).with_name("runner-template.json")
        tpl.write_text(json.dumps(template))
        self._push(prompts, posixpath.join(work, "prompts.jsonl"))
        self._push(tpl, posixpath.join(work, "template.json"))
        q = shlex.quote  # every value that reaches the device's shell is quoted
        if self.python_runner() == "kit":
            from harness.kits.tvm_kit import python_command, runner_env

            env, python = runner_env(KIT_ROOT), python_command(KIT_ROOT)
        else:
            env = {"PYTHONPATH": os.environ.get("SLM_BENCH_DEVICE_PYTHONPATH", str(REPO))}
            python = q(self.runner_python())
        self.check_pinning(placement)
        assignments = " ".join(f"{k}={q(v)}" for k, v in {**env, **placement.env()}.items())
        cmd = (
            f"cd {q(work)} && {assignments} {self.pin(python, placement)} -m harness.runner"
            f" {q(bundle_path)} {q(work + '/prompts.jsonl')} --template"
            f" {q(work + '/template.json')} --max-new-tokens {int(max_new_tokens)} --mode {q(mode)}"
            f" --threads {placement.threads} --serve 2>>{q(work + '/runner.log')}"
        )
        return RunnerProcess(
            _ShellPipe(self.device.shell(cmd, stream=True)), f"{self.profile.name} {self.serial}"
        )


def _meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (
                1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            )
    return out


def _battery(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        if value.strip().lstrip("-").isdigit():
            out[key.strip()] = int(value)
    return out
