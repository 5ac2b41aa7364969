"""Energy of a request: sample the device's power while it runs and integrate.

Phones expose their fuel gauge in ``/sys/class/power_supply/battery/{current_now,voltage_now}``
(microamps, negative while discharging on most devices, and microvolts). Sampling is best effort:
a device without those files, or a desktop, simply reports no energy. The request's energy is
the mean sampled power times its runtime (from the runner's own clock).
"""

from __future__ import annotations

import threading
import time

INTERVAL_S = 0.2


class PowerSampler:
    """``with PowerSampler(device) as p: ...`` then ``p.mean_watts`` (None where unreadable)."""

    def __init__(self, device, interval_s: float = INTERVAL_S):
        self.device, self.interval_s = device, interval_s
        self.samples: list[tuple[float, float]] = []  # (monotonic time, watts)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)

    def __enter__(self) -> PowerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()  # one reading at the end, so short requests still have two points

    def _sample(self) -> bool:
        try:
            watts = self.device.power_watts()
        except Exception:  # a vanished device is reported by the request itself, not the sampler
            watts = None
        if watts is None:
            return False
        self.samples.append((time.monotonic(), watts))
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._sample():
                return  # no fuel gauge: stop asking
            self._stop.wait(self.interval_s)

    @property
    def mean_watts(self) -> float | None:
        """Mean sampled power. Energy is this times the request's own runtime: the sampling
        window (adb round trips included) is longer than the request and must not count."""
        if not self.samples:
            return None
        return sum(w for _, w in self.samples) / len(self.samples)
