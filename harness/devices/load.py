"""How busy the device was with other work while a request ran: the noise a record carries.

The kernel counts CPU time in ``/proc/stat`` (every core, in clock ticks) and each process's own
in ``/proc/PID/stat`` (utime + stime, the same ticks). Read both before and after a request: what
all cores spent busy, less what the runner spent, over all cores' time, is the share of the
device that other processes took (``cpu_load_other``, 0..1). A desktop build job on one of two
cores reads about 0.5; an idle phone a few hundredths (system services).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_TICKS = 20  # all cores together; 0.1 s of a 2-core desktop at the usual 100 ticks a second


@dataclass(frozen=True)
class Counters:
    busy: int  # all cores, clock ticks not idle
    total: int  # all cores, clock ticks
    runner: int | None  # the runner process's own ticks (None: not known)


def parse_counters(text: str) -> Counters | None:
    """``cat /proc/stat /proc/PID/stat`` output -> counters (None when /proc/stat is missing)."""
    busy = total = None
    runner = None
    for line in text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(v) for v in line.split()[1:] if v.isdigit()]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
            # guest time is already inside user/nice: count the first 8 fields only
            total = sum(ticks[:8])
            busy = total - idle
        elif ") " in line and line.split(" ", 1)[0].isdigit():
            # after the command name, which may hold spaces
            fields = line.rsplit(") ", 1)[1].split()
            if len(fields) > 12:
                # utime, stime (fields 14 and 15 of the line)
                runner = int(fields[11]) + int(fields[12])
    if busy is None:
        return None
    return Counters(busy, total, runner)


def other_load(before: Counters | None, after: Counters | None) -> float | None:
    """The share of all cores' time that processes other than the runner used between the two."""
    if before is None or after is None or before.runner is None or after.runner is None:
        return None
    total = after.total - before.total
    # a request of a few ticks: the counters' granularity (10 ms) is the answer
    if total < MIN_TICKS:
        return None
    others = (after.busy - before.busy) - (after.runner - before.runner)
    return round(min(max(others / total, 0.0), 1.0), 4)


def children_ticks(stat_line: str) -> int | None:
    """``cutime + cstime`` of a ``/proc/PID/stat`` line: the CPU ticks of the children that
    process waited for. A native runner's pinned shell prints its own at the end of a request,
    so the program it ran (which is gone by then) is counted as the runner."""
    fields = stat_line.rsplit(") ", 1)[-1].split() if ") " in stat_line else []
    return (
        int(fields[13]) + int(fields[14])
        if len(fields) > 14 and fields[13].isdigit() and fields[14].isdigit()
        else None
    )


class RequestLoad:
    """``with RequestLoad(device, pid, topology) as load: <request>`` then ``load.fields()``: the
    record's ``cpu_load_other`` and each cluster's ``scaling_cur_freq`` at the request's end.
    Without a pid (a native runner, one process per request) the runner's ticks are given to
    ``fields`` afterwards, as its pinned shell reported them."""

    def __init__(self, device, pid: int | None, topology):
        self.device, self.pid, self.topology = device, pid, topology
        self.before = self.after = None
        self.freqs: dict[int, int] = {}

    def _read(self) -> Counters | None:
        try:
            return parse_counters(self.device.cpu_counters(self.pid))
        except Exception:  # noqa: BLE001 - a vanished device is reported by the request itself
            return None

    def __enter__(self) -> RequestLoad:
        self.before = self._read()
        return self

    def __exit__(self, *exc) -> None:
        if self.before is not None:
            self.after = self._read()
        try:
            self.freqs = self.device.cur_freqs()
        except Exception:  # noqa: BLE001
            self.freqs = {}

    def fields(self, runner_ticks: int | None = None) -> dict:
        by_cluster = {
            name: max(self.freqs[c] for c in ids if c in self.freqs)
            for name, ids in self.topology.clusters.items()
            if any(c in self.freqs for c in ids)
        }
        before, after = self.before, self.after
        # the runner's ticks came from its shell
        if self.pid is None and before is not None and after is not None:
            before, after = (
                Counters(before.busy, before.total, 0),
                Counters(after.busy, after.total, runner_ticks),
            )
        return {"cpu_load_other": other_load(before, after), "cpu_freq_khz": by_cluster or None}


def device_load(device, seconds: float = 1.0, sleep=None) -> float | None:
    """The share of all cores busy over ``seconds`` while the harness waits: between requests the
    runner is idle, so this is other processes' load (None where /proc/stat is unreadable)."""
    import time

    before = parse_counters(device.cpu_counters(None))
    (sleep or time.sleep)(seconds)
    after = parse_counters(device.cpu_counters(None))
    if before is None or after is None or after.total - before.total < MIN_TICKS:
        return None
    return (after.busy - before.busy) / (after.total - before.total)


def wait_until_quiet(device, max_load: float | None, max_wait_s: float, log, sleep=None) -> float:
    """Before a measured request: wait until other processes use at most ``max_load`` of the
    device's CPU (sampled a second at a time), at most ``max_wait_s``; returns the seconds waited.
    A device still busy then is measured anyway; its record's cpu_load_other says so."""
    import time

    if max_load is None:
        return 0.0
    start, announced = time.monotonic(), False
    while True:
        load = device_load(device, sleep=sleep)
        waited = time.monotonic() - start
        if load is None or load <= max_load:
            return waited
        if not announced:
            log(
                f"waiting for the device to be quiet: other processes use {load:.0%} of its CPU >"
                f" {max_load:.0%} (at most {max_wait_s:.0f} s)"
            )
            announced = True
        if waited >= max_wait_s:
            log(
                f"device still {load:.0%} busy after {waited:.0f} s (limit {max_load:.0%});"
                " measuring anyway, its cpu_load_other records it"
            )
            return waited
