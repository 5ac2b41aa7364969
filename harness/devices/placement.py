"""Where a run's requests execute: a thread count on a core set, applied the same way to every
engine and runner, and read back from the running runner.

``--threads 1,2 --cores all,little`` is a sweep: every (threads, cores) pair is one
:class:`Placement`, measured in turn with a runner started for it. Without ``--threads`` a core
set runs one thread per core; without ``--cores`` the device's default set runs
(``Topology.default_cores``: on a phone every core but the slowest cluster).

Applying a placement (the device does it, ``Device.start_runner``/``Device.pin``):
- the runner process is pinned to the set: ``taskset MASK`` on a phone (toybox takes a bare hex
  mask), ``sched_setaffinity`` on the desktop; its threads inherit it;
- TVM's pool gets exactly ``threads`` workers: ``TVM_NUM_THREADS`` sizes it, and the runner calls
  ``runtime.config_threadpool`` with that count, because TVM's default (big mode) otherwise caps
  the pool to the cores that share the highest ``scaling_max_freq`` (one core on an Exynos S24);
  ``TVM_BIND_THREADS=0`` keeps TVM from re-pinning its workers to cores of its own choosing
  (outside the set, on a phone);
- llama.cpp gets ``-t threads`` and ``-C mask`` (its own affinity, non-strict), or ``n_threads``
  in process.

Reading it back (:func:`readback`): the runner's ``/proc/PID/status`` (``Cpus_allowed``,
``Threads``) and the pool size the engine reports. What differs from what was asked is recorded
in ``placement_mismatch``, never corrected silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.devices.topology import (
    Topology,
    cores_of_mask,
    format_list,
    mask_of,
    parse_core_set,
    parse_list,
)
from harness.errors import UserError

# Environment of a pinned runner: see the module docstring for why each is set.
TVM_BIND = {"TVM_BIND_THREADS": "0"}


@dataclass(frozen=True)
class Placement:
    threads: int
    cores: tuple[int, ...]
    clusters: tuple[str, ...]
    threads_asked: int | None = None
    cores_asked: str | None = None
    default: bool = False

    @property
    def mask(self) -> str:
        return mask_of(list(self.cores))

    @property
    def oversubscribed(self) -> bool:
        return self.threads > len(self.cores)

    def label(self) -> str:
        """``2 threads on big (cpu 0-1)``: what progress lines and logs say."""
        where = "+".join(self.clusters) or "cpu"
        extra = ", oversubscribed" if self.oversubscribed else ""
        return (
            f"{self.threads} thread{'s' * (self.threads != 1)} on {where} (cpu"
            f" {format_list(list(self.cores))}{extra})"
        )

    def asked(self) -> dict:
        """The record fields that say what was asked (the
        journal's resume key holds the first two)."""
        return {
            "threads_asked": self.threads_asked,
            "cores_asked": self.cores_asked,
            "cpu_mask_asked": self.mask,
            "placement_default": self.default,
            "oversubscribed": self.oversubscribed,
        }

    def env(self) -> dict[str, str]:
        """Environment of the runner process for this placement."""
        return {"TVM_NUM_THREADS": str(self.threads), **TVM_BIND}

    def to_dict(self) -> dict:
        return {
            "threads": self.threads,
            "cores": format_list(list(self.cores)),
            "cpu_mask": self.mask,
            "clusters": list(self.clusters),
            **{k: v for k, v in self.asked().items() if k != "cpu_mask_asked"},
        }


def plan_placements(
    threads: list[int] | None, cores: list[str] | None, topology: Topology, phone: bool, where: str
) -> list[Placement]:
    """Every (threads, cores) pair of a run, cores outer
    (a core set's thread counts run side by side)."""
    default = topology.default_cores(phone)
    if not default:
        raise UserError(
            f"{where} reports no online core; check `slm-bench devices` and the device's"
            " /sys/devices/system/cpu/online"
        )
    for count in threads or []:
        if count < 1:
            raise UserError(
                f"--threads {count}: a run needs at least one thread; use --threads 1 or more"
            )
    placements = []
    for asked_cores in cores or [None]:
        chosen = parse_core_set(asked_cores, topology, where) if asked_cores else default
        for asked_threads in threads or [None]:
            count = asked_threads or len(chosen)
            placements.append(
                Placement(
                    count,
                    tuple(chosen),
                    tuple(topology.clusters_covering(chosen)),
                    asked_threads,
                    asked_cores,
                    default=chosen == default and count == len(default),
                )
            )
    return placements


def status_fields(status: str) -> dict[str, str]:
    """``/proc/PID/status`` -> its fields (``Cpus_allowed``,
    ``Cpus_allowed_list``, ``Threads``...)."""
    out = {}
    for line in status.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def readback(
    placement: Placement, topology: Topology, status: str | None, pool_threads: int | None
) -> dict:
    """The record fields that say what ran: the runner's allowed cores and thread counts as read
    from it, and ``placement_mismatch`` where they differ from what was asked."""
    fields = status_fields(status or "")
    allowed = None
    if fields.get("Cpus_allowed_list"):
        allowed = parse_list(fields["Cpus_allowed_list"])
    elif fields.get("Cpus_allowed"):
        allowed = cores_of_mask(fields["Cpus_allowed"])
    out: dict = {"threads": pool_threads}
    if fields.get("Threads", "").isdigit():
        out["os_threads"] = int(fields["Threads"])
    problems = []
    if allowed is not None:
        out.update(
            cpu_mask=mask_of(allowed),
            cpu_list=format_list(allowed),
            cpu_clusters=topology.clusters_covering(allowed),
        )
        if sorted(allowed) != sorted(placement.cores):
            problems.append(
                f"asked cores {format_list(list(placement.cores))}, the runner was allowed"
                f" {format_list(allowed)}"
            )
    else:
        problems.append("the runner's allowed cores could not be read back")
    if pool_threads is not None and pool_threads != placement.threads:
        problems.append(f"asked {placement.threads} threads, the engine ran {pool_threads}")
    out["placement_mismatch"] = "; ".join(problems) or None
    return out


def runner_placement(runner, device, placement: Placement, topology: Topology) -> dict:
    """Read back where a runner ran: a native runner's adapter knows (it parsed the program's own
    report, ``readback()``); the python runner tells its pid and pool size, and the device shows
    that process's status."""
    if hasattr(runner, "readback"):
        return runner.readback(topology)
    described = runner.identify()
    return readback(
        placement, topology, device.process_status(described["pid"]), described.get("threads")
    )
