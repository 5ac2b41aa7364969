"""The emulated phone's thermal throttling: trip points on its hottest CPU zone, and a duty cycle
that really slows the phone's programs down.

A phone's kernel lowers its CPU clocks when a thermal zone passes a trip point and raises them
again only once the zone has cooled a few degrees below it (hysteresis, so that the clock does
not flap around the trip). The emulated phone cannot lower the host's clocks: it shows the lowered
clock in ``scaling_cur_freq`` and gives the phone's programs that share of the CPU instead. Every
``PERIOD_S`` it stops their process groups (SIGSTOP) for ``1 - scale`` of the period and lets
them run (SIGCONT) for the rest. Stopped programs use no CPU, so the thermal model sees less load
and the phone cools: under a sustained load the clock saws between trip levels, as a phone's does.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

PERIOD_S = 0.1  # short against a decode step's scale of seconds, long against a stop's cost


class TripPoints:
    """The profile's ``emulated.throttle`` trips (``temp_c``, ``scale``), engaged one by one as
    the zone passes them and released once it is ``release_c`` below; none: never throttles."""

    def __init__(self, spec: dict | None):
        spec = spec or {}
        self.trips = sorted(
            (float(t["temp_c"]), float(t["scale"])) for t in spec.get("throttle") or []
        )
        self.release_c = float(spec.get("release_c", 3.0))
        self.level = 0  # how many trips are engaged
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.trips)

    @property
    def scale(self) -> float:
        """The share of its speed the CPU runs at: the highest engaged trip's (1.0: none)."""
        return self.trips[self.level - 1][1] if self.level else 1.0

    def update(self, temp_c: float) -> float:
        """Engage the trips ``temp_c`` passed, release
        those it fell ``release_c`` below; the scale."""
        with self._lock:
            while self.level < len(self.trips) and temp_c >= self.trips[self.level][0]:
                self.level += 1
            while self.level and temp_c < self.trips[self.level - 1][0] - self.release_c:
                self.level -= 1
            return self.scale


class DutyCycle:
    """Stops and continues the phone's process groups so that they get ``scale()`` of the CPU.

    ``scale`` is asked once a period (it also advances the thermal model and the trips). The
    thread runs while there are groups, so an idle phone costs nothing. Signals go out under
    ``_lock`` and a group is forgotten under it before its leader is reaped: a group id is never
    signalled after its pid may have been reused. Nothing is left stopped: groups are continued
    when unthrottled, when one is forgotten, and on ``close``."""

    def __init__(self, scale: Callable[[], float], period: float = PERIOD_S):
        self._scale, self.period = scale, period
        self._groups: set[int] = set()
        self._stopped = False  # whether the groups are in a stop phase now
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def add(self, pgid: int) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._groups.add(pgid)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="emulated-throttle", daemon=True
                )
                self._thread.start()

    def forget(self, pgid: int) -> None:
        """Before ``pgid``'s leader is reaped: continue
        every group (the one leaving too), drop it."""
        with self._lock:
            self._resume()
            self._groups.discard(pgid)

    def resume(self) -> None:
        with self._lock:
            self._resume()

    def close(self) -> None:
        """Continue everything and end the thread; later groups are not throttled."""
        self._closed.set()
        with self._lock:
            self._resume()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            scale = self._scale()
            with self._lock:
                if self._closed.is_set() or not self._groups:
                    self._resume()
                    self._thread = None  # add() starts another when a program starts
                    return
                if scale < 1.0:
                    self._signal(signal.SIGSTOP)
                    self._stopped = True
            if scale >= 1.0:
                self._closed.wait(self.period)
                continue
            self._closed.wait((1.0 - scale) * self.period)
            self.resume()
            self._closed.wait(scale * self.period)

    def _resume(self) -> None:
        if self._stopped:
            self._signal(signal.SIGCONT)
            self._stopped = False

    def _signal(self, sig: int) -> None:
        for pgid in self._groups:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass  # every member gone already (the leader a zombie, not yet reaped)
