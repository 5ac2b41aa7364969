"""Unit-to-unit variation: how far apart two phones of one model measure the same thing.

The result tables group by device model (harness.report.aggregate.device_label), so the phones of
a pool (``pool:galaxy-s24``) share a row. Where a device model was measured by two or more phones
(serials), this section gives each phone its own row per build, setting and L (all tasks pooled):
its OTPS and ITPS medians and its count of measured requests, with, per group, the spread across
phones: the highest per-phone median over the lowest (``max/min``). The medians of the conditions
each phone measured under (the hottest thermal zone before each request, other processes' share
of the CPU) stand beside them where the records have them, since they may explain part of it.

Its rows are also written as ``units.csv`` beside ``summary.csv``. A report of one phone per device
model has neither.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from harness.report.aggregate import (
    OVERALL_KEYS,
    TEMP_BEFORE,
    format_labels,
    measured,
    setting_order,
)

if TYPE_CHECKING:
    from harness.report.render import Table

SERIAL = "device.serial"
SPEEDS: dict[str, str] = {"otps": "OTPS", "itps": "ITPS"}  # metric -> its name in headers
CONDITIONS: tuple[str, ...] = (TEMP_BEFORE, "cpu_load_other")
TITLE = "Unit-to-unit variation"
FILE = "units.csv"


def unit_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per phone per group (OVERALL_KEYS) of every device model measured by two or more
    phones: ``serial``, ``n``, ``<metric>_median`` for OTPS and ITPS and each condition, then per
    group ``phones``, ``<metric>_max_min`` (NaN under two phones with a value, or a zero) and
    ``same_prompts`` (every phone measured the same prompts). Empty when no device model was
    measured by two phones."""
    data = measured(df)
    if data.empty or SERIAL not in data:
        return pd.DataFrame()
    phones_per_device = data.groupby("device")[SERIAL].nunique()
    data = data[data["device"].isin(phones_per_device[phones_per_device > 1].index)]
    if data.empty:
        return pd.DataFrame()
    if "cpus" not in data:
        data = data.assign(cpus="")
    numeric = [m for m in (*SPEEDS, *CONDITIONS) if m in data]
    data = data.assign(**{m: pd.to_numeric(data[m], errors="coerce") for m in numeric})
    keys = list(OVERALL_KEYS)
    rows = []
    for key, group in data.groupby(keys, dropna=False, sort=False):
        phones = []
        for serial, part in group.groupby(SERIAL, sort=True):
            phone = dict(zip(keys, key, strict=True))
            phone.update(serial=str(serial), n=len(part))
            phone.update({f"{m}_median": part[m].median() for m in numeric})
            phone["prompts"] = frozenset(part["prompt_id"])
            phones.append(phone)
        same = len({p.pop("prompts") for p in phones}) == 1
        for phone in phones:
            phone["phones"] = len(phones)
            for metric in SPEEDS:
                phone[f"{metric}_max_min"] = max_over_min(
                    [p.get(f"{metric}_median") for p in phones]
                )
            phone["same_prompts"] = same
        rows += phones
    table = pd.DataFrame(rows)
    order = {"cpus": lambda col: col.fillna("").map(setting_order)}
    by = ["device", *(k for k in keys if k != "device"), "serial"]
    table = table[by + [c for c in table if c not in by]]  # the device first, as in the table
    return table.sort_values(
        by, key=lambda col: order.get(col.name, lambda c: c)(col), kind="stable"
    ).reset_index(drop=True)


def max_over_min(medians: list) -> float:
    """The highest median over the lowest; NaN with fewer than two values or a zero."""
    values = [float(v) for v in medians if v is not None and not math.isnan(v)]
    if len(values) < 2 or min(values) <= 0:
        return math.nan
    return max(values) / min(values)


def units_table(rows: pd.DataFrame, df: pd.DataFrame) -> Table | None:
    """The section's table from :func:`unit_rows`; None when it is empty."""
    from harness.report.render import Table, format_value

    if rows.empty:
        return None
    labels = format_labels(df)
    cpus = bool((rows["cpus"].fillna("") != "").any())
    conditions = [
        c for c in CONDITIONS if f"{c}_median" in rows and rows[f"{c}_median"].notna().any()
    ]
    headers = ["device", "model", "quant", "weights", "engine / target"]
    headers += ["cpus"] * cpus + ["L", "phone", "n"]
    headers += [f"{name} (tok/s)" for name in SPEEDS.values()]
    headers += [CONDITION_HEADERS[c] for c in conditions]
    headers += [f"{name} max/min" for name in SPEEDS.values()]
    body, previous = [], None
    for _, row in rows.iterrows():
        group = tuple(str(row[k]) for k in OVERALL_KEYS)
        first = group != previous  # the spread is given once, on the group's first phone
        previous = group
        engine = f"{row['engine']} / {row['target']}" if row["target"] else str(row["engine"])
        quant = labels.get((row["model"], row["quantization"], row["engine"]), row["quantization"])
        cells = [row["device"], row["model"], quant, row["weights"], engine]
        cells += [row["cpus"] or "not recorded"] * cpus + [int(row["L"]), row["serial"], row["n"]]
        cells += [format_value(row[f"{m}_median"], m) for m in SPEEDS]
        cells += [_condition(row[f"{c}_median"], c) for c in conditions]
        cells += [_spread(row, m) if first else "" for m in SPEEDS]
        body.append([str(c) for c in cells])
    return Table(TITLE, headers, body, NOTE)


CONDITION_HEADERS = {TEMP_BEFORE: "temp before (°C)", "cpu_load_other": "other load"}
NOTE = (
    "The tables above pool the phones of one device model; here each phone (serial) has its own "
    "row per build, setting and L, all tasks pooled, for every device model that two or more "
    "phones measured. OTPS and ITPS: the median of that phone's measured requests; n: how many it "
    "measured. max/min: the highest of the phones' medians over the lowest, on each group's first "
    "row ('-' where one phone measured the group). It is the unit-to-unit variation plus whatever "
    "else differed while the phones measured: their temperature and other processes' load may "
    "explain part of it (temp before: median of the hottest thermal zone before each request, "
    "from device_state_before; other load: median share of the CPU other processes used, "
    "cpu_load_other; where recorded). 'different prompts': the phones measured different requests "
    "of that L (a cell that moved to another phone part-way), so their medians are not over the "
    "same prompts."
)


def _spread(row, metric: str) -> str:
    ratio = row[f"{metric}_max_min"]
    if ratio is None or math.isnan(ratio):
        return "-"
    return f"{ratio:.2f}×" + ("" if row["same_prompts"] else " (different prompts)")


def _condition(value, condition: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.0%}" if condition == "cpu_load_other" else f"{value:.1f}"
