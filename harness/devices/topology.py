"""A device's CPU topology and the core sets a run may pin to.

Read from the device itself: every core of ``/sys/devices/system/cpu/possible``, whether it is
online, its ``cpufreq/cpuinfo_max_freq``, its part (``CPU part`` of ``/proc/cpuinfo``) and its
feature flags. Cores group into clusters by maximum frequency, named by rank, fastest first:
one cluster is ``big``; two are ``big`` and ``little``; three ``big``, ``mid``, ``little``; four
``prime``, ``big``, ``mid``, ``little`` (an Exynos 2400: X4, A720 at 2.9 GHz, A720 at 2.6 GHz,
A520). Intel hybrid desktops name their P and E cores in ``/sys/devices/cpu_{core,atom}/cpus``:
those become ``big`` and ``little`` whatever their frequencies say.

A core set (``--cores``) is ``all``, a cluster name, a ``+`` of cluster names (``prime+big``), a
core or a range (``4-9``), or a ``+`` of any of these (``0-1+4``). A mask is written as toybox's
``taskset`` takes it: hex, no ``0x`` (cpu0-3 is ``f``, cpu7-9 is ``380``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import UserError

# Arm's part numbers (``CPU part`` in /proc/cpuinfo, implementer 0x41), as Arm's technical
# reference manuals give them (MIDR_EL1.PartNum).
ARM_PARTS = {
    0xD05: "Cortex-A55",
    0xD0B: "Cortex-A76",
    0xD0D: "Cortex-A77",
    0xD41: "Cortex-A78",
    0xD44: "Cortex-X1",
    0xD46: "Cortex-A510",
    0xD47: "Cortex-A710",
    0xD48: "Cortex-X2",
    0xD4D: "Cortex-A715",
    0xD4E: "Cortex-X3",
    0xD80: "Cortex-A520",
    0xD81: "Cortex-A720",
    0xD82: "Cortex-X4",
}
RANK_NAMES = {
    1: ["big"],
    2: ["big", "little"],
    3: ["big", "mid", "little"],
    4: ["prime", "big", "mid", "little"],
}


@dataclass(frozen=True)
class Core:
    id: int
    online: bool = True
    max_khz: int | None = None  # cpufreq/cpuinfo_max_freq
    part: str = ""  # Cortex-X4, or the x86 model name
    features: tuple[str, ...] = ()


@dataclass
class Topology:
    """Cores and their clusters (name -> core ids, fastest cluster first)."""

    cores: list[Core]
    clusters: dict[str, list[int]] = field(default_factory=dict)
    source: str = "read from the device"

    @property
    def online(self) -> list[int]:
        return [c.id for c in self.cores if c.online]

    def cluster_of(self, core: int) -> str | None:
        return next((name for name, ids in self.clusters.items() if core in ids), None)

    def clusters_covering(self, cores: list[int]) -> list[str]:
        """Cluster names any of ``cores`` belongs to, fastest first."""
        return [name for name, ids in self.clusters.items() if set(ids) & set(cores)]

    def default_cores(self, phone: bool) -> list[int]:
        """The stated default: on a phone every online core but the slowest cluster (TVM's big
        mode and ExecuTorch's performance cores do the same; the little cores slow a
        synchronised pool down to their pace), elsewhere every online core."""
        online = self.online
        if not phone or len(self.clusters) < 2:
            return online
        slowest = list(self.clusters.values())[-1]
        return [c for c in online if c not in slowest] or online

    def to_dict(self) -> dict:
        """What ``run.json`` and ``slm-bench devices --json`` keep."""
        return {
            "source": self.source,
            "clusters": {
                name: {
                    "cores": format_list(ids),
                    "mask": mask_of(ids),
                    "max_khz": self._max_khz(ids),
                    "part": self._part(ids),
                }
                for name, ids in self.clusters.items()
            },
            "online": format_list(self.online),
            "cores": len(self.cores),
            "features": sorted({f for c in self.cores for f in c.features}),
        }

    def describe(self) -> str:
        """One line: ``10 cores: prime 9 (Cortex-X4, 3.21 GHz), big 7-8 (...), ...``."""
        parts = []
        for name, ids in self.clusters.items():
            ghz = self._max_khz(ids)
            what = ", ".join(
                x for x in (self._part(ids), f"{ghz / 1e6:.2f} GHz" if ghz else "") if x
            )
            parts.append(f"{name} {format_list(ids)}" + (f" ({what})" if what else ""))
        offline = [c.id for c in self.cores if not c.online]
        tail = f"; offline: {format_list(offline)}" if offline else ""
        return f"{len(self.cores)} cores: " + ", ".join(parts) + tail

    def _max_khz(self, ids: list[int]) -> int | None:
        values = [c.max_khz for c in self.cores if c.id in ids and c.max_khz]
        return max(values) if values else None

    def _part(self, ids: list[int]) -> str:
        return ", ".join(sorted({c.part for c in self.cores if c.id in ids and c.part}))


# -- reading -------------------------------------------------------------------------------


def parse_list(text: str) -> list[int]:
    """A kernel CPU list (``0-3,7``) -> [0, 1, 2, 3, 7]."""
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def format_list(ids: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> ``0-3,7`` (the kernel's form, as ``Cpus_allowed_list`` shows it)."""
    ids, runs = sorted(set(ids)), []
    for core in ids:
        if runs and core == runs[-1][1] + 1:
            runs[-1][1] = core
        else:
            runs.append([core, core])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def mask_of(ids: list[int]) -> str:
    """[7, 8, 9] -> ``380``: hex as toybox ``taskset`` takes it (no ``0x``)."""
    return f"{sum(1 << i for i in set(ids)):x}"


def cores_of_mask(mask: str) -> list[int]:
    """``380`` or ``Cpus_allowed``'s ``00000000,00000380`` -> [7, 8, 9]."""
    value = int(mask.replace(",", "").strip() or "0", 16)
    return [i for i in range(value.bit_length()) if value >> i & 1]


def parse_cpuinfo(text: str) -> dict[int, dict[str, str]]:
    """``/proc/cpuinfo`` -> processor number -> its fields (lower-cased keys)."""
    out: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "processor" and value.strip().isdigit():
            current = out.setdefault(int(value), {})
        elif current is not None:
            current[key] = value.strip()
    return out


def common_features(cpuinfo: str) -> set[str]:
    """The feature flags every core of ``/proc/cpuinfo`` lists (``Features`` on ARM, ``flags`` on
    x86): what code may use wherever the scheduler puts it. Empty when no core lists any."""
    lists = [
        set((fields.get("features") or fields.get("flags") or "").split())
        for fields in parse_cpuinfo(cpuinfo).values()
    ]
    return set.intersection(*lists) if lists else set()


def part_name(fields: dict[str, str]) -> str:
    """A core's part: Arm's name for its ``CPU part``
    (``0xd82`` -> Cortex-X4), else x86's model name."""
    part = fields.get("cpu part", "")
    if part:
        try:
            number = int(part, 16)
        except ValueError:
            return part
        implementer = fields.get("cpu implementer", "0x41")
        return (
            ARM_PARTS.get(number, f"part {part}")
            if implementer.lower() == "0x41"
            else f"{implementer} part {part}"
        )
    return fields.get("model name", "")


def build_topology(
    possible: str,
    online: str,
    cpuinfo: str,
    max_khz: dict[int, int],
    hybrid: dict[str, str] | None = None,
    source: str = "read from the device",
) -> Topology:
    """A topology from what the device's files said: the ``possible`` and ``online`` lists,
    ``/proc/cpuinfo``, each core's ``cpuinfo_max_freq`` (missing where it has no cpufreq), and on
    an Intel hybrid desktop the kernel's P/E lists (``{"big": "0-7", "little": "8-15"}``)."""
    info = parse_cpuinfo(cpuinfo)
    online_ids = set(parse_list(online)) if online.strip() else set(parse_list(possible))
    cores = []
    for core in parse_list(possible):
        fields = info.get(core, {})  # an offline core has no block in /proc/cpuinfo: part unknown
        flags = (fields.get("features") or fields.get("flags") or "").split()
        cores.append(
            Core(core, core in online_ids, max_khz.get(core), part_name(fields), tuple(flags))
        )
    return Topology(cores, cluster_cores(cores, hybrid), source)


def cluster_cores(cores: list[Core], hybrid: dict[str, str] | None = None) -> dict[str, list[int]]:
    """Clusters by maximum frequency, fastest first, named by rank (module docstring)."""
    if hybrid:
        return {name: parse_list(ids) for name, ids in hybrid.items() if ids.strip()}
    by_freq: dict[int, list[int]] = {}
    for core in cores:
        by_freq.setdefault(core.max_khz or 0, []).append(core.id)
    groups = [by_freq[f] for f in sorted(by_freq, reverse=True)]
    if not groups:  # no cores: no clusters (the generated names below need at least one group)
        return {}
    names = RANK_NAMES.get(len(groups)) or [
        "prime",
        "big",
        *(f"mid{i}" for i in range(1, len(groups) - 2)),
        "little",
    ]
    return dict(zip(names, groups, strict=True))  # a name per rank, by construction


# -- core sets -----------------------------------------------------------------------------

_TERM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_core_set(text: str, topology: Topology, where: str) -> list[int]:
    """A ``--cores`` SET (module docstring) -> sorted core ids; a core or cluster the device lacks,
    or an offline core, is a one-line error naming the fix."""
    text = text.strip()
    if not text:
        raise UserError(
            f"--cores: an empty core set; use all, a cluster ({', '.join(topology.clusters)}) or a"
            " list like 0-3"
        )
    known = {c.id for c in topology.cores}
    chosen: set[int] = set()
    for term in text.split("+"):
        term = term.strip().lower()
        if term == "all":
            chosen |= set(topology.online)
        elif term in topology.clusters:
            chosen |= set(topology.clusters[term])
        elif m := _TERM.match(term):
            lo, hi = int(m[1]), int(m[2] or m[1])
            if hi < lo:
                raise UserError(
                    f"--cores {text}: the range {term} runs backwards; write it low-high, like"
                    f" {hi}-{lo}"
                )
            missing = [c for c in range(lo, hi + 1) if c not in known]
            if missing:
                raise UserError(
                    f"--cores {text}: {where} has no core {format_list(missing)} (its cores:"
                    f" {format_list(sorted(known))}); pick cores from that list or a cluster name"
                )
            chosen |= set(range(lo, hi + 1))
        else:
            raise UserError(
                f"--cores {text}: {where} has no cluster {term!r} (its clusters:"
                f" {', '.join(topology.clusters)}); use one of those, all, or a core list like 0-3"
            )
    offline = sorted(chosen - set(topology.online))
    if offline:
        raise UserError(
            f"--cores {text}: core {format_list(offline)} of {where} is offline; "
            f"bring it online or choose from the online cores {format_list(topology.online)}"
        )
    return sorted(chosen)


# -- this host -----------------------------------------------------------------------------


def local_topology() -> Topology:
    """This host's topology. Cores outside this process's affinity (``sched_getaffinity``: a
    container's cpuset, a ``taskset`` around the harness) count as offline: a run cannot use them.
    """
    import glob
    import os
    from pathlib import Path

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    base = "/sys/devices/system/cpu"
    freqs = {}
    for path in glob.glob(f"{base}/cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        value = read(path).strip()
        if value.isdigit():
            freqs[int(re.search(r"cpu(\d+)/cpufreq", path)[1])] = int(value)
    hybrid = {
        name: read(f"/sys/devices/{pmu}/cpus")
        for name, pmu in (("big", "cpu_core"), ("little", "cpu_atom"))
    }
    count = os.cpu_count() or 1
    topology = build_topology(
        read(f"{base}/possible") or f"0-{count - 1}",
        read(f"{base}/online"),
        read("/proc/cpuinfo"),
        freqs,
        hybrid if all(v.strip() for v in hybrid.values()) else None,
        source="read from this host (/proc/cpuinfo, /sys/devices/system/cpu, sched_getaffinity)",
    )
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return topology
    topology.cores = [
        Core(c.id, c.online and c.id in allowed, c.max_khz, c.part, c.features)
        for c in topology.cores
    ]
    return topology


def freqs_from_grep(text: str) -> dict[int, int]:
    """``grep . .../cpuN/cpufreq/cpuinfo_max_freq`` output (``PATH:VALUE`` lines) -> core -> kHz."""
    out = {}
    for m in re.finditer(r"cpu(\d+)/cpufreq/[a-z_]+:(\d+)", text):
        out[int(m[1])] = int(m[2])
    return out
