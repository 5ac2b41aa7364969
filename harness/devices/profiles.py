"""Device profiles (``device_profiles/*.yaml``): what a kind of device is and how to treat it.

A profile names how to recognise the device (``match``: properties that must all equal), the
compile target, the memory budget a run is planned with and the device's total RAM
(``harness.memory``), and the memory bandwidth that bounds decode. Every number states where it
comes from in its ``*_source`` field, inside the profile: a profile cites nothing outside the
project.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import UserError
from harness.yamlfile import load_named_folder

PROFILE_DIR = Path(__file__).resolve().parents[2] / "device_profiles"


class CpuCluster(BaseModel):
    """One cluster of a profile's CPU: which cores, what they are, how fast."""

    model_config = ConfigDict(extra="forbid")

    cores: str = Field(pattern=r"^\d+(-\d+)?$")  # a kernel CPU list: "0-3", "9"
    part: str  # Cortex-A520; the emulated phone's /proc/cpuinfo names it by Arm's part number
    max_khz: int = Field(gt=0)  # cpufreq/cpuinfo_max_freq


class CpuSpec(BaseModel):
    """A phone's CPU as its kernel shows it (``harness.devices.topology`` reads the same files
    from a real device); the emulated phone answers /proc/cpuinfo and /sys/devices/system/cpu
    from it."""

    model_config = ConfigDict(extra="forbid")

    clusters: list[CpuCluster] = Field(min_length=1)
    # /proc/cpuinfo "Features" (asimddp, i8mm, sve2, ...)
    features: list[str] = Field(default_factory=list)
    source: str  # where the layout and clocks come from

    @model_validator(mode="after")
    def _cores_are_numbered_once(self) -> CpuSpec:
        from harness.devices.topology import parse_list

        seen = [core for cluster in self.clusters for core in parse_list(cluster.cores)]
        if sorted(seen) != list(range(len(seen))):
            raise ValueError(f"clusters must number the cores 0..N-1 once each, got {sorted(seen)}")
        return self


class TripPoint(BaseModel):
    """Past ``temp_c`` in its hottest CPU zone, the
    emulated phone's CPU runs at ``scale`` of its speed."""

    model_config = ConfigDict(extra="forbid")

    temp_c: float
    scale: float = Field(gt=0, le=1)


class EmulatedSpec(BaseModel):
    """How the emulated phone (``harness.devices.emulated``) behaves beyond what it reports: its
    thermal throttling (``emulated/thermal.py``), and overrides of its ambient and RAM."""

    model_config = ConfigDict(extra="forbid")

    throttle: list[TripPoint] = Field(default_factory=list)  # none: never throttles
    release_c: float = Field(default=3.0, ge=0)  # a trip is released this far below it (hysteresis)
    throttle_source: str | None = None
    ambient_c: float | None = None  # the thermal model's resting temperature (27 when unset)
    tau_s: float = Field(default=60.0, gt=0)  # the battery's thermal time constant, device seconds
    # /proc/meminfo's MemTotal (else memory_total_bytes)
    mem_total_kb: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _trips_rise_and_slow(self) -> EmulatedSpec:
        temps, scales = [t.temp_c for t in self.throttle], [t.scale for t in self.throttle]
        if temps != sorted(set(temps)) or scales != sorted(set(scales), reverse=True):
            raise ValueError("throttle trips must rise in temp_c and fall in scale")
        return self


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    kind: str = Field(pattern="^(local|adb)$")
    match: dict[str, str] = Field(default_factory=dict)  # device properties -> required values
    compile_target: str
    # what a run is planned to use of the RAM; over it: a warning, not a skip
    memory_budget_bytes: int | None = None
    memory_budget_source: str | None = None
    # the device's RAM: a cell above it is skipped (a reachable phone's MemTotal wins)
    memory_total_bytes: int | None = None
    memory_total_source: str | None = None
    memory_bandwidth_gbps: float | None = None  # peak DRAM bandwidth, for the decode ceiling
    bandwidth_source: str | None = None
    soc: str | None = None
    gpu: str | None = None  # what the GPU is (ro.hardware.egl only names its driver)
    getprop: dict[str, str] = Field(default_factory=dict)  # used by the emulated device
    # a Python on the phone that can run harness.runner (e.g. Termux's)
    device_python: str | None = None
    runner: str | None = None  # the default runner there (harness.runners); None: python
    # the CPU layout (phones): what the emulated phone shows; a real one is read
    cpu: CpuSpec | None = None
    emulated: EmulatedSpec | None = None  # the emulated phone's thermal throttling and overrides
    notes: str | None = None


@cache
def load_profiles(folder: Path = PROFILE_DIR) -> dict[str, DeviceProfile]:
    return load_named_folder(folder, DeviceProfile, "fix the file", "fix the profile")


def get_profile(name: str) -> DeviceProfile:
    profiles = load_profiles()
    if name not in profiles:
        raise UserError(f"no device profile {name!r}; available: {', '.join(profiles)}")
    return profiles[name]


def match_profile(kind: str, props: dict[str, str]) -> DeviceProfile | None:
    """The first profile of this kind whose ``match`` properties all equal the device's."""
    best = None
    for profile in load_profiles().values():
        if profile.kind != kind:
            continue
        if all(props.get(k) == v for k, v in profile.match.items()):
            if best is None or len(profile.match) > len(best.match):
                best = profile  # the most specific match wins
    return best
