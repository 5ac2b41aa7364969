"""The device's conditions around a measured request: heat (wait until cool) and energy.

Kept below the benchmark (which calls these for every request) so that other journeys that
measure, such as a soak, share them.
"""

from __future__ import annotations

import time

from harness.results.schema import RunSpec

POLL_S = 2.0  # how often a cooling device is asked for its temperature


def energy_fields(mean_watts: float | None, raw: dict) -> dict:
    """``energy_j`` = mean power sampled during the request x its runtime, and
    ``energy_j_per_token`` per processed (input + output) token."""
    if mean_watts is None or not raw.get("runtime_s"):
        return {}
    energy_j = mean_watts * raw["runtime_s"]
    tokens = (raw.get("input_tokens") or 0) + (raw.get("output_tokens") or 0)
    return {"energy_j": energy_j, "energy_j_per_token": energy_j / tokens if tokens else None}


def wait_until_cool(device, spec: RunSpec, log, sleep=time.sleep):
    """Before a measured request: wait until the battery (else the hottest zone) is at or below
    ``spec.max_temp_c``, at most ``spec.max_wait_s``. Returns (seconds waited, cooled?, state)."""
    state = device.state()
    if spec.max_temp_c is None:
        return 0.0, True, state
    start, announced = time.monotonic(), False
    while True:
        temp = state.battery_temp_c if state.battery_temp_c is not None else state.cpu_temp_c
        waited = time.monotonic() - start
        if temp is None or temp <= spec.max_temp_c:
            return waited, True, state
        if not announced:  # a wait of minutes must not look like a hang
            log(f"waiting for the device to cool: {temp:.1f} °C > {spec.max_temp_c} °C (at most {spec.max_wait_s:.0f} s)")
            announced = True
        if waited >= spec.max_wait_s:
            log(f"device still at {temp:.1f} °C after {waited:.0f} s (limit {spec.max_temp_c} °C); measuring anyway, recorded as cooled=false")
            return waited, False, state
        sleep(min(POLL_S, max(0.0, spec.max_wait_s - waited)))
        state = device.state()
