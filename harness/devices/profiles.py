"""Device profiles (``device_profiles/*.yaml``): what a kind of device is and how to treat it.

A profile names how to recognise the device (``match``: properties that must all equal), the
compile target, the memory budget a run is planned with and the device's total RAM
(``harness.memory``), and the memory bandwidth that bounds decode. Every number states where it
comes from in its ``*_source`` field, inside the profile: a profile cites nothing outside the
project.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UserError
from harness.yamlfile import load_named_folder

PROFILE_DIR = Path(__file__).resolve().parents[2] / "device_profiles"


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    kind: str = Field(pattern="^(local|adb)$")
    match: dict[str, str] = Field(default_factory=dict)  # device properties -> required values
    compile_target: str
    memory_budget_bytes: int | None = None  # what a run is planned to use of the RAM; over it: a warning, not a skip
    memory_budget_source: str | None = None
    memory_total_bytes: int | None = None  # the device's RAM: a cell above it is skipped (a reachable phone's MemTotal wins)
    memory_total_source: str | None = None
    memory_bandwidth_gbps: float | None = None  # peak DRAM bandwidth, for the decode ceiling
    bandwidth_source: str | None = None
    soc: str | None = None
    gpu: str | None = None  # what the GPU is (ro.hardware.egl only names its driver)
    getprop: dict[str, str] = Field(default_factory=dict)  # used by the emulated device
    device_python: str | None = None  # a Python on the phone that can run harness.runner (e.g. Termux's)
    runner: str | None = None  # the default runner there (harness.runners); None: python
    notes: str | None = None


@lru_cache(maxsize=None)
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
