"""Grid cells onto devices: every device busy at once, one cell at a time on each.

Each device gets a worker thread. A cell aimed at one device waits for that device; a cell aimed
at a pool (``pool:galaxy-s24``) goes to whichever member is free first. A cell whose device
disappears while it runs is retried once on another member of its pool; that device's worker
stops, and its share of the queue goes to the others. The order of the plan is kept per device:
a device takes the first waiting cell it can run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


class Outcome(Enum):
    DONE = "done"  # measured, or journaled as failed for a reason of its own
    DEVICE_LOST = "device lost"  # the device left mid-cell: another member may take it


@dataclass(eq=False)
class Job:
    """One cell and the devices that may run it."""

    cell: object
    members: list[str]
    tried: list[str] = field(default_factory=list)  # devices it was lost on

    def runnable_on(self, device: str) -> bool:
        return device in self.members and device not in self.tried


# run(job, device) -> Outcome; lost(job, device, reason) journals a job no device is left for
RunJob = Callable[[Job, str], Outcome]
GiveUp = Callable[[Job, str], None]

RETRIES = 1  # a cell is retried once on another member after its device was lost


class Scheduler:
    def __init__(self, jobs: list[Job], run: RunJob, give_up: GiveUp):
        self.waiting = list(jobs)
        self.running: dict[str, Job] = {}
        self.lost_devices: set[str] = set()
        self._run, self._give_up = run, give_up
        self._cond = threading.Condition()
        self._error: BaseException | None = None  # a worker's Ctrl-C or bug: stops the others

    @property
    def devices(self) -> list[str]:
        """Every device some job may run on, in the order the plan first names them."""
        return list(dict.fromkeys(d for job in self.waiting for d in job.members))

    def run(self) -> None:
        """Run every job; returns when each has finished or no device is left for it. An
        exception in one job (KeyboardInterrupt included) lets the running ones finish, starts no
        more, and is raised here."""
        devices = self.devices
        if len(devices) == 1:  # in this thread: Ctrl-C and a job's error arrive as they always did
            self._work(devices[0])
        else:
            workers = [
                threading.Thread(target=self._guarded, args=(d,), name=f"grid-{d}", daemon=True)
                for d in devices
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            if self._error is not None:
                raise self._error
        for job in self.waiting:  # every device that could run these was lost
            self._give_up(job, "no device left to run it: " + ", ".join(job.members) + " lost")

    def _guarded(self, device: str) -> None:
        try:
            self._work(device)
        except BaseException as exc:  # raised by run(), in the calling thread
            with self._cond:
                self._error = self._error or exc
                self._cond.notify_all()

    def _work(self, device: str) -> None:
        while True:
            job = self._next(device)
            if job is None:
                return
            try:
                outcome = self._run(job, device)
            except BaseException:
                with self._cond:
                    del self.running[device]
                    self._cond.notify_all()
                raise
            with self._cond:
                del self.running[device]
                if outcome is Outcome.DEVICE_LOST:
                    self.lost_devices.add(device)
                    job.tried.append(device)
                    others = [m for m in job.members if m not in self.lost_devices]
                    if len(job.tried) <= RETRIES and others:
                        self.waiting.insert(0, job)
                    else:
                        self._give_up(job, f"{device} was lost")
                self._cond.notify_all()
            if outcome is Outcome.DEVICE_LOST:
                return

    def _next(self, device: str) -> Job | None:
        """The first waiting job this device can run, or None when none can come to it: no
        waiting one, and none running elsewhere that could come back (its device lost)."""
        with self._cond:
            while self._error is None:
                for job in self.waiting:
                    if job.runnable_on(device):
                        self.waiting.remove(job)
                        self.running[device] = job
                        return job
                if not any(j.runnable_on(device) for j in self.running.values()):
                    return None
                self._cond.wait()
            return None
