"""The device's conditions around a measured request: heat (wait until cool) and energy.

Kept below the benchmark (which calls these for every request) so that other journeys that
measure, such as a soak, share them.
"""

from __future__ import annotations

import time

from harness.results.schema import RunSpec

POLL_S = 2.0  # how often a cooling device is asked for its temperature


IDLE_INTERVAL_S = 0.25  # fuel-gauge readings while idle power is sampled


def energy_fields(mean_watts: float | None, raw: dict, idle_watts: float | None = None) -> dict:
    """``energy_j`` = mean power sampled during the request x its runtime, and
    ``energy_j_per_token`` per processed (input + output) token: gross. Where the run sampled
    the device at idle (:func:`idle_power`), the same above idle: what the request added to the
    phone's own draw (screen, radios, services), the figure the survey metrics count."""
    if mean_watts is None or not raw.get("runtime_s"):
        return {}
    energy_j = mean_watts * raw["runtime_s"]
    tokens = (raw.get("input_tokens") or 0) + (raw.get("output_tokens") or 0)
    out = {"energy_j": energy_j, "energy_j_per_token": energy_j / tokens if tokens else None}
    if idle_watts is not None:
        above = max(mean_watts - idle_watts, 0.0) * raw["runtime_s"]
        out.update(
            idle_power_w=idle_watts,
            energy_j_above_idle=above,
            energy_j_per_token_above_idle=above / tokens if tokens else None,
        )
    return out


def idle_power(device, seconds: float, log, sleep=time.sleep) -> dict:
    """Before measuring: the fuel gauge's mean power over ``seconds`` with nothing of ours running
    (``idle_power_w``, None on a device without a gauge, such as the desktop, or when seconds is
    0), and whether the device is charging (``charging``), which makes every energy figure
    meaningless: the gauge then reads the charger's current. Said once, here, as a warning."""
    charging = device.state().charging
    if charging:
        log(
            "warning: the device is charging: its fuel gauge measures the charger's current, so"
            " energy figures are meaningless; unplug it (adb over Wi-Fi) or switch the hub's power"
            " off for energy, the speed figures are unaffected"
        )
    if seconds <= 0 or device.power_watts() is None:
        return {"idle_power_w": None, "charging": charging}
    log(
        f"sampling idle power for {seconds:.0f} s (fuel gauge, nothing running) for energy above"
        " idle"
    )
    readings, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        watts = device.power_watts()
        if watts is not None:
            readings.append(watts)
        sleep(IDLE_INTERVAL_S)
    return {
        "idle_power_w": sum(readings) / len(readings) if readings else None,
        "charging": charging,
    }


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
            log(
                f"waiting for the device to cool: {temp:.1f} °C > {spec.max_temp_c} °C (at most"
                f" {spec.max_wait_s:.0f} s)"
            )
            announced = True
        if waited >= spec.max_wait_s:
            log(
                f"device still at {temp:.1f} °C after {waited:.0f} s (limit {spec.max_temp_c} °C);"
                " measuring anyway, recorded as cooled=false"
            )
            return waited, False, state
        sleep(min(POLL_S, max(0.0, spec.max_wait_s - waited)))
        state = device.state()
