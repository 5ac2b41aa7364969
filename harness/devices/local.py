"""The desktop itself: the fallback device and the reference for phone runs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from harness.devices.base import Device, RunnerProcess
from harness.devices.placement import Placement
from harness.devices.profiles import get_profile
from harness.devices.topology import Topology
from harness.engines import host_cores, with_huge_page_malloc
from harness.results.schema import DeviceInfo, DeviceState

REPO = Path(__file__).resolve().parents[2]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_bandwidth_gbps() -> float:
    """Host memory bandwidth now: best of 5 copies of
    a 256 MiB array (read + write bytes / time)."""
    import time

    import numpy as np

    src = np.ones(64 * 2**20, dtype=np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        best = min(best, time.perf_counter_ns() - t0)
    return 2 * src.nbytes / best  # bytes per ns == GB/s


def measured_bandwidth_gbps() -> float:
    """:func:`measure_bandwidth_gbps`, measured once per machine and cached: the decode ceiling
    needs a number for the desktop, whose profile cannot know the machine's memory."""
    from harness.cache import cache_dir

    cached = cache_dir() / "host-bandwidth.json"
    node = platform.node()
    if cached.is_file():
        data = json.loads(cached.read_text())
        if data.get("node") == node:
            return float(data["gbps"])
    gbps = measure_bandwidth_gbps()
    cached.write_text(
        json.dumps({"node": node, "gbps": gbps, "method": "numpy copy of 256 MiB, best of 5"})
    )
    return gbps


class LocalDevice(Device):
    def __init__(self, target: str = "llvm"):
        self.serial = "local"
        profile = get_profile("desktop-cuda" if target == "cuda" else "desktop-cpu")
        if profile.memory_bandwidth_gbps is None and target != "cuda":
            profile = profile.model_copy(
                update={
                    "memory_bandwidth_gbps": round(measured_bandwidth_gbps(), 2),
                    "bandwidth_source": "measured on this host: numpy copy of 256 MiB, best of 5",
                }
            )
        self.profile = profile

    def info(self) -> DeviceInfo:
        import psutil

        return DeviceInfo(
            serial=self.serial,
            model=f"desktop {platform.machine()}",
            host=platform.node(),
            brand=platform.system(),
            soc=_cpu_name(),
            os=f"{platform.system()} {platform.release()}",
            ram_bytes=psutil.virtual_memory().total,
            profile=self.profile.name,
            cores=host_cores(),
            machine=platform.machine(),
        )

    def state(self) -> DeviceState:
        import psutil

        cpu_temp = None
        try:
            temps = psutil.sensors_temperatures()
            readings = [t.current for entries in temps.values() for t in entries if t.current]
            cpu_temp = max(readings) if readings else None
        except (AttributeError, OSError):
            pass
        battery = None
        try:
            bat = psutil.sensors_battery()
            battery = bat.percent if bat else None
        except (AttributeError, OSError):
            pass
        return DeviceState(
            battery_level=battery,
            cpu_temp_c=cpu_temp,
            mem_available_bytes=psutil.virtual_memory().available,
        )

    def clean(self) -> None:
        """Nothing to remove: the desktop runs bundles in place from the cache."""

    def deploy(self, bundle: Path) -> str:
        return str(bundle)  # already here

    def topology(self) -> Topology:
        from harness.devices.topology import local_topology

        return local_topology()

    def process_status(self, pid: int) -> str | None:
        try:
            return Path(f"/proc/{int(pid)}/status").read_text()
        except OSError:
            return None

    def cpu_counters(self, pid: int | None) -> str:
        paths = ["/proc/stat"] + ([f"/proc/{int(pid)}/stat"] if pid else [])
        out = []
        for path in paths:
            try:
                out.append(Path(path).read_text())
            except OSError:
                pass
        return "".join(out)

    def cur_freqs(self) -> dict[int, int]:
        import glob
        import re

        out = {}
        for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"):
            try:
                out[int(re.search(r"cpu(\d+)/cpufreq", path)[1])] = int(Path(path).read_text())
            except (OSError, ValueError):
                pass
        return out

    def pin(self, command: str, placement: Placement) -> str:
        """util-linux ``taskset`` (Debian's, always there)
        takes the same bare hex mask as toybox's."""
        return f"taskset {placement.mask} {command}"

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
        # Beside the runner log, as AdbDevice does: kept with the run, not left in /tmp.
        tpl = Path(log_path).with_name("runner-template.json")
        tpl.write_text(json.dumps(template))
        cmd = [
            sys.executable,
            "-m",
            "harness.runner",
            bundle_path,
            str(prompts),
            "--template",
            tpl,
            "--max-new-tokens",
            str(max_new_tokens),
            "--mode",
            mode,
            "--threads",
            str(placement.threads),
            "--serve",
        ]
        env = with_huge_page_malloc(
            {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
                **placement.env(),
            }
        )
        cores = set(placement.cores)
        with open(log_path, "ab") as log:
            # Pinned before exec: the runner and every thread it starts inherit the set.
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
                env=env,
                preexec_fn=lambda: os.sched_setaffinity(0, cores),
            )
        return RunnerProcess(proc, "the desktop", log_path)
