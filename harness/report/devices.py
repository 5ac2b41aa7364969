"""What each run's device was, as run.json recorded it: the "Devices" table and the run-level
Problems (a phone that was charging).

``run.json`` keeps the CPU topology read from the device (``topology``: its clusters, fastest
first, with their cores, part and maximum clock, and where that was read from, which says
"emulated ..." on an emulated phone), the thread counts and core sets the run measured
(``placements``), the idle power its energy is measured above (``idle_power_w``) and whether the
device was charging. Runs written before these fields existed add nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report.aggregate import device_label

if TYPE_CHECKING:
    from harness.report.aggregate import RunData
    from harness.report.render import Table

MAX_RUN_NAMES = 3  # runs named in one row of the table before the rest is a count


def devices_table(data: RunData) -> Table | None:
    """One row per device and what was measured on it; None when no run recorded a topology.

    Runs with the same row (a grid's cells on one phone) share it, so a grid of thirty cells
    does not repeat one phone thirty times."""
    from harness.report.render import Table

    rows: dict[tuple, list[str]] = {}
    for name, info in data.infos.items():
        row = device_row(info)
        if row is not None:
            rows.setdefault(row, []).append(name)
    if not rows:
        return None
    with_idle = any(row[-1] for row in rows)
    headers = ["runs", "device", "clusters (fastest first)", "topology source", "settings measured"]
    headers += ["idle power (W)"] * with_idle
    body = [[_run_names(names), *row[:-1], *([row[-1]] * with_idle)] for row, names in rows.items()]
    note = (
        "clusters as read from the device: cores, part and maximum clock. Settings: thread count · "
        "cluster (cores); default = the device's default core set, one thread per core."
    )
    if with_idle:
        note += (
            " idle power: the fuel gauge at rest before measuring; energy above idle is measured "
            "above it."
        )
    return Table("Devices", headers, body, note)


def device_row(info) -> tuple[str, ...] | None:
    """(device, clusters, source, settings, idle power) of one run.json; None without topology."""
    topology = getattr(info, "topology", None) or {}
    placements = getattr(info, "placements", None) or []
    if not topology and not placements:
        return None
    idle = getattr(info, "idle_power_w", None)
    return (
        device_label(info.device.model_dump()),
        clusters_text(topology),
        str(topology.get("source") or "-"),
        settings_text(placements),
        f"{idle:.2f}" if isinstance(idle, (int, float)) else "",
    )


def clusters_text(topology: dict) -> str:
    """``prime 9 (Cortex-X4, 3.21 GHz), big 7-8 (Cortex-A720, 2.90 GHz), ...``, plus the online
    cores where some are offline (or outside the harness's affinity on a desktop)."""
    parts = []
    for name, cluster in (topology.get("clusters") or {}).items():
        khz = cluster.get("max_khz")
        what = ", ".join(
            x for x in (cluster.get("part") or "", f"{khz / 1e6:.2f} GHz" if khz else "") if x
        )
        parts.append(f"{name} {cluster.get('cores', '?')}" + (f" ({what})" if what else ""))
    text = ", ".join(parts) or "-"
    count, online = topology.get("cores"), topology.get("online")
    if count and online and online != (f"0-{count - 1}" if count > 1 else "0"):
        text += f"; online: {online}"
    return text


def settings_text(placements: list[dict]) -> str:
    """``1 thread · big (0-1); 2 threads · big (0-1) (default)``: as the tables' cpus column names
    them."""
    return "; ".join(_setting(p) for p in placements) or "-"


def _setting(placement: dict) -> str:
    threads = placement.get("threads")
    where = "+".join(placement.get("clusters") or []) or "cpu"
    text = f"{threads} thread{'s' * (threads != 1)} · " if threads else ""
    text += f"{where} ({placement.get('cores')})" if placement.get("cores") else where
    text += " (default)" if placement.get("placement_default") else ""
    return text + (" · oversubscribed" if placement.get("oversubscribed") else "")


def _run_names(names: list[str]) -> str:
    if len(names) <= MAX_RUN_NAMES:
        return ", ".join(names)
    return f"{', '.join(names[:MAX_RUN_NAMES])} and {len(names) - MAX_RUN_NAMES} more"


def charging_notes(data: RunData) -> list[str]:
    """A Problems line per run measured while the device charged: its fuel gauge read the
    charger's current, so every energy figure of that run is meaningless (speeds are not)."""
    return [
        f"{name}: the device was charging: this run's energy figures are meaningless (the fuel "
        "gauge reads the charger, not the model); unplug it (adb over Wi-Fi) to measure energy"
        for name, info in data.infos.items()
        if getattr(info, "charging", None) is True
    ]
