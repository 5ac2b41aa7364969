"""Noise flags: result cells whose median is not the device's speed.

A cell (one build, setting, task and L: harness.report.aggregate.GROUP_KEYS) is flagged

- **under load** when other processes used more than ``UNDER_LOAD_SHARE`` of all cores' time
  while its measured requests ran (the median of the records' ``cpu_load_other``,
  harness.devices.load): the runner shared the CPU, so it measured a fraction of the device;
- **wide spread** when the p90 / p10 of its ITPS or OTPS exceeds ``WIDE_SPREAD_RATIO`` over at
  least ``MIN_SPREAD_VALUES`` measured requests: its requests did not measure one speed (a job
  that started or stopped, throttling), and the median is whichever side had more repeats.

A desktop whose other job came and went read 36-43 tok/s at some lengths and 98-104 at others,
one cell 17.8-105: a curve that rose with L for no reason of the model's. The tables mark such
cells in a "noise" column (only when some cell is flagged); the Problems list names each.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from harness.report.aggregate import OVERALL_KEYS

if TYPE_CHECKING:
    import pandas as pd

# An idle phone's own services take a few hundredths of its CPU; above a tenth another process
# competed with the runner (and ``slm-bench run --max-load 0.1`` waits for less than that).
UNDER_LOAD_SHARE = 0.10
# Repeats of one request on a quiet device sit within a few percent of each other; a p90 a
# quarter above the p10 means the requests measured different speeds.
WIDE_SPREAD_RATIO = 1.25
MIN_SPREAD_VALUES = 3  # p10/p90 of fewer values are two single requests, not a spread
SPREAD_METRICS: dict[str, str] = {"itps": "ITPS", "otps": "OTPS"}  # metric -> its name in text
UNDER_LOAD, WIDE_SPREAD = "under load", "wide spread"
REASONS = (UNDER_LOAD, WIDE_SPREAD)  # the order a cell lists them in
MARK = "⚠"
COLUMN = "noise"  # the summary's column (summary.csv) and the tables' header
POOLED = "all"  # the task of a row that pools every task
MAX_LISTED = 10  # Problems lines before the rest is one count


# -- the rule ---------------------------------------------------------------------------


def load_share(row) -> float | None:
    """The cell's median share of the CPU other processes used; None where not measured."""
    value = row.get("cpu_load_other_median")
    return None if _missing(value) else float(value)


def spread(row, metric: str) -> tuple[float, float, float] | None:
    """(p10, p90, p90 / p10) of ``metric`` when the cell has enough values to judge a spread."""
    count, p10, p90 = (row.get(f"{metric}_{stat}") for stat in ("count", "p10", "p90"))
    if _missing(count) or count < MIN_SPREAD_VALUES or _missing(p10) or _missing(p90):
        return None
    ratio = p90 / p10 if p10 > 0 else (math.inf if p90 > 0 else 1.0)
    return float(p10), float(p90), ratio


def wide_metrics(row) -> list[str]:
    """The metrics of SPREAD_METRICS whose p90 / p10 exceeds WIDE_SPREAD_RATIO."""
    return [
        m for m in SPREAD_METRICS if (s := spread(row, m)) is not None and s[2] > WIDE_SPREAD_RATIO
    ]


def cell_reasons(row) -> list[str]:
    """Why one cell's median is not the device's speed ([] when nothing says so)."""
    share = load_share(row)
    reasons = [UNDER_LOAD] if share is not None and share > UNDER_LOAD_SHARE else []
    return reasons + ([WIDE_SPREAD] if wide_metrics(row) else [])


def rule_note() -> str:
    """The rule, stated where the tables mark cells."""
    return (
        f"{COLUMN} {MARK}: {UNDER_LOAD} = other processes used more than "
        f"{UNDER_LOAD_SHARE:.0%} of the CPU while the cell's requests ran (median "
        f"cpu_load_other); {WIDE_SPREAD} = p90/p10 of ITPS or OTPS above {WIDE_SPREAD_RATIO:g} "
        f"(cells of {MIN_SPREAD_VALUES} or more requests). A flagged median is not the "
        "device's speed (see Problems); a pooled row is flagged when one of its tasks is."
    )


# -- the summary ------------------------------------------------------------------------


def with_noise(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary (aggregate.summary_table) with a ``noise`` column: the reasons each cell is
    flagged, "" when it is not. A pooled row takes the reasons of its tasks' cells, so every
    mark on the overview is backed by a Problems line naming the task."""
    if summary.empty:
        return summary.assign(**{COLUMN: ""})
    rows = [row for _, row in summary.iterrows()]
    own = [cell_reasons(row) if row["task"] != POOLED else [] for row in rows]
    by_cell: dict[tuple, set[str]] = {}
    for row, reasons in zip(rows, own, strict=True):
        by_cell.setdefault(_pooled_key(row), set()).update(reasons)
    noise = [
        ", ".join(r for r in REASONS if r in by_cell.get(_pooled_key(row), ()))
        if row["task"] == POOLED
        else ", ".join(reasons)
        for row, reasons in zip(rows, own, strict=True)
    ]
    return summary.assign(**{COLUMN: noise})


def _pooled_key(row) -> tuple:
    return tuple(str(row[k]) for k in OVERALL_KEYS if k in row)


def any_flagged(summary: pd.DataFrame) -> bool:
    return COLUMN in summary and bool((summary[COLUMN].fillna("") != "").any())


def noise_cell(row) -> str:
    """A table's noise cell: ``⚠ under load, wide spread``, or ""."""
    reasons = row.get(COLUMN) or ""
    return f"{MARK} {reasons}" if reasons else ""


# -- Problems ---------------------------------------------------------------------------


def noise_problems(summary: pd.DataFrame) -> list[str]:
    """One Problems line per flagged task cell; past MAX_LISTED, one line counting the rest."""
    if not any_flagged(summary):
        return []
    flagged = summary[(summary["task"] != POOLED) & (summary[COLUMN].fillna("") != "")]
    lines = [problem_line(row) for _, row in flagged.iterrows()]
    if len(lines) <= MAX_LISTED:
        return lines
    reasons = flagged[COLUMN].str.split(", ").explode().value_counts()
    counts = ", ".join(f"{int(reasons[r])} {r}" for r in REASONS if r in reasons)
    more = len(lines) - MAX_LISTED
    rest = f"... and {more} more flagged cells ({counts} in all); the Per task table marks each"
    return [*lines[:MAX_LISTED], rest]


def problem_line(row) -> str:
    """``m (q4) on Pixel 8 L=800 summ: measured under load (...) — rerun with --max-load 0.1``."""
    details = []
    share = load_share(row)
    under_load = share is not None and share > UNDER_LOAD_SHARE
    if under_load:
        details.append(f"measured under load (other processes used {share:.0%} of the CPU, median)")
    if wide := wide_metrics(row):
        details.append(f"wide spread ({', '.join(_spread_text(row, m) for m in wide)})")
    max_load = f"--max-load {UNDER_LOAD_SHARE:g}"
    advice = (
        f"rerun with {max_load}"
        if under_load
        else f"rerun on an idle, cool device ({max_load}, --max-temp) or with more --repeats"
    )
    return f"{cell_label(row)}: {'; '.join(details)} — {advice}"


def cell_label(row) -> str:
    from harness.report.tradeoff import build_label

    setting = f" · {row['cpus']}" if row.get("cpus") else ""
    return f"{build_label(row)} on {row['device']}{setting} L={int(row['L'])} {row['task']}"


def _spread_text(row, metric: str) -> str:
    from harness.report.render import format_value

    p10, p90, ratio = spread(row, metric)
    times = "∞" if math.isinf(ratio) else f"{ratio:.1f}"
    low, high = format_value(p10, metric), format_value(p90, metric)
    return f"{SPREAD_METRICS[metric]} p10-p90 {low}-{high}, {times}×"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
