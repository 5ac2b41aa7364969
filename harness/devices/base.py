"""The one small interface every device implements (desktop, adb phone, emulated phone)."""

from __future__ import annotations

import json
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path

from harness.devices.placement import Placement
from harness.devices.profiles import DeviceProfile
from harness.devices.topology import Topology
from harness.errors import UserError
from harness.results.schema import DeviceInfo, DeviceState


class DeviceGone(UserError):
    """The device (or the runner on it) disappeared mid-run."""


class RunnerProcess:
    """A runner in ``--serve`` mode behind a pipe: send a command line, read one JSON line back."""

    def __init__(self, proc: subprocess.Popen, describe: str, stderr_path: Path | None = None):
        # stderr goes to a file, never a pipe: a chatty runner must not block on a full pipe.
        self.proc, self.describe, self.stderr_path = proc, describe, stderr_path

    def request(self, command: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise DeviceGone(self._gone_message()) from None
        return self.read()

    def read(self) -> dict:
        while True:
            try:
                line = self.proc.stdout.readline()
            except OSError:  # the stream broke under us (adb server gone, socket reset)
                line = ""
            if not line:
                raise DeviceGone(self._gone_message())
            line = line.strip()
            if line.startswith("{"):
                msg = json.loads(line)
                if "fatal" in msg:
                    raise UserError(f"runner on {self.describe} failed to start: {msg['fatal']}")
                return msg

    def identify(self) -> dict:
        """The runner's own account of itself: ``pid`` and the engine's ``threads``."""
        return self.request({"op": "describe"})

    def close(self) -> dict | None:
        summary = None
        try:
            if self.proc.poll() is None:
                summary = self.request({"op": "quit"}).get("summary")
        except UserError:
            pass
        finally:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return summary

    def _gone_message(self) -> str:
        code = self.proc.poll()
        err = ""
        if self.stderr_path is not None and self.stderr_path.is_file():
            tail = self.stderr_path.read_text(errors="replace").strip().splitlines()[-1:]
            err = f" ({tail[0][:200]})" if tail else ""
        return (
            f"the runner on {self.describe} stopped (exit code {code}){err}; records so far are"
            " journaled, rerun the same command to resume"
        )


class Device(ABC):
    """What the benchmark needs from a device."""

    serial: str
    profile: DeviceProfile

    @property
    def lock_name(self) -> str:
        """What the per-device lock is named by: the serial, unique on one host."""
        return self.serial

    @abstractmethod
    def info(self) -> DeviceInfo:
        """Static facts: model, brand, SoC, OS, RAM, matched profile."""

    @abstractmethod
    def state(self) -> DeviceState:
        """Battery and thermal state now, where the device has them."""

    bytes_pushed: int = 0  # by the last deploy()

    @abstractmethod
    def deploy(self, bundle: Path) -> str:
        """Make the bundle available on the device; return its path there."""

    @abstractmethod
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
        """Start ``python -m harness.runner ... --serve`` on the device, pinned to ``placement``."""

    @property
    def phone(self) -> bool:
        """A phone picks its default core set differently from a desktop
        (``Topology.default_cores``)."""
        return self.profile.kind == "adb"

    @abstractmethod
    def topology(self) -> Topology:
        """The CPU's cores and clusters, read from the device (``harness.devices.topology``)."""

    def cpu_features(self) -> set[str]:
        """The feature flags every online core lists in /proc/cpuinfo (empty when none are
        known): which ARM64 build of a bundle its cores execute."""
        cores = [set(c.features) for c in self.topology().cores if c.online]
        return set.intersection(*cores) if cores else set()

    @abstractmethod
    def process_status(self, pid: int) -> str | None:
        """``/proc/PID/status`` of a process on the device (None: gone or unreadable)."""

    def cpu_counters(self, pid: int | None) -> str:
        """``/proc/stat`` and, for a pid, ``/proc/PID/stat`` as text (``harness.devices.load``)."""
        return ""

    def cur_freqs(self) -> dict[int, int]:
        """Each core's ``cpufreq/scaling_cur_freq`` now, in kHz (empty where there is no
        cpufreq)."""
        return {}

    @abstractmethod
    def pin(self, command: str, placement: Placement) -> str:
        """``command`` as the device's shell runs it pinned to the placement's cores."""

    def python_runner(self) -> str | None:
        """How ``python -m harness.runner`` starts on this device ("host", "device", "kit"), or
        None where only native runners can measure."""
        return "host"

    def power_watts(self) -> float | None:
        """Instantaneous power draw, where the device has a fuel gauge (phones); else None."""
        return None

    def oom_evidence(self) -> str:
        """Recent log lines that may say a runner was killed for memory (a phone's lmkd); the
        desktop runner's stderr is read from its log instead, so here: nothing."""
        return ""
