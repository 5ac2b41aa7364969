"""Compare two runs cell by cell: the regression check for CI (``slm-bench compare A B``).

A cell is one (model, quantization, engine, target, task, L) measured in both runs; its
value is the median over measured requests. Where both runs measured a cell with some of the same
settings (thread count and core set, the ``cpus`` label), it is compared setting by setting, and
a setting only one run measured is listed as only in that run; otherwise (a run from before
placement was recorded, or two devices whose core sets differ) each run's settings are pooled
into one median, as before. For each metric the comparison gives the ratio
B / A and a *slowdown* in percent that reads the same way for every metric:

- throughputs (ITPS, OTPS): slowdown = (A / B - 1) x 100 — B needs that much more time per token;
- times (TTFT, runtime):    slowdown = (B / A - 1) x 100.

So a decode that became twice as slow is +100 % whichever way it is measured, and a faster
B gives a negative slowdown. ``--fail-above PCT`` fails when any cell's slowdown exceeds PCT,
as llama.cpp's compare script and pytest-benchmark's ``--benchmark-compare-fail`` do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

# metric -> higher is better?
COMPARED: dict[str, bool] = {"itps": True, "otps": True, "ttft_s": False, "runtime_s": False}
CELL_KEYS: tuple[str, ...] = ("model", "quantization", "engine", "target", "task", "L")
SETTING = "cpus"  # a cell compared setting by setting carries it; a pooled cell has ""


@dataclass
class Comparison:
    # CELL_KEYS (+ cpus where some cell was matched by setting) + per metric: <m>_a, <m>_b,
    # <m>_ratio, <m>_slowdown_pct
    cells: pd.DataFrame
    metrics: list[str]
    only_a: list[tuple]  # cells measured in A only (with their setting where matched by setting)
    only_b: list[tuple]
    devices_a: list[str]
    devices_b: list[str]
    # journal lines skipped: "RUN_A: <run>/records.jsonl:LINE: reason" (RUN_B likewise)
    unreadable: list[str] = field(default_factory=list)

    def regressions(self, threshold_pct: float) -> pd.DataFrame:
        """Cells where some metric is slower than ``threshold_pct`` percent, with the worst
        metric."""
        cols = [f"{m}_slowdown_pct" for m in self.metrics]
        worst = self.cells[cols].max(axis=1, skipna=True)
        flagged = self.cells[worst > threshold_pct].copy()
        flagged["worst_metric"] = flagged[cols].idxmax(axis=1).str.removesuffix("_slowdown_pct")
        flagged["worst_slowdown_pct"] = worst[worst > threshold_pct]
        return flagged


def slowdown_pct(a: float, b: float, higher_is_better: bool) -> float:
    """How much slower B is than A, in percent (negative: B is faster)."""
    if not (a and b) or math.isnan(a) or math.isnan(b):
        return float("nan")
    return (a / b - 1.0) * 100.0 if higher_is_better else (b / a - 1.0) * 100.0


def compare_runs(run_a: list[Path | str], run_b: list[Path | str]) -> Comparison:
    """Match the cells of A and B and compute ratios and slowdowns of their medians.

    Each side is a list of run folders or grid output folders (every cell of a grid)."""
    import pandas as pd

    from harness.report.aggregate import load_runs

    a, b = load_runs(list(run_a)), load_runs(list(run_b))
    med_a, med_b = cell_medians(a.df, b.df)
    if med_a.empty or med_b.empty:
        empty = ", ".join(map(str, run_a if med_a.empty else run_b))
        raise UserError(
            f"{empty} has no measured records (status ok, not warm-up); "
            "fix: compare runs that finished at least one request"
        )
    metrics = [m for m in COMPARED if f"{m}_median" in med_a and f"{m}_median" in med_b]
    keys = [*CELL_KEYS, SETTING]
    keep = [*keys, *(f"{m}_median" for m in metrics)]
    merged = med_a[keep].merge(
        med_b[keep], on=keys, how="outer", suffixes=("_a", "_b"), indicator=True
    )
    merged = merged.sort_values(keys, key=_setting_key, kind="stable")
    both = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    if both.empty:
        raise UserError(
            "the two runs share no cell (model, quantization, engine, target, task, L); "
            "fix: compare runs of the same model and settings, e.g. before and after a change"
        )
    # The setting column only where some cell was matched by setting: old comparisons look as
    # before.
    key_columns = keys if (merged[SETTING] != "").any() else list(CELL_KEYS)
    cells = both[key_columns].copy()
    for m in metrics:
        va, vb = both[f"{m}_median_a"].astype(float), both[f"{m}_median_b"].astype(float)
        cells[f"{m}_a"], cells[f"{m}_b"] = va, vb
        cells[f"{m}_ratio"] = vb / va
        cells[f"{m}_slowdown_pct"] = [
            slowdown_pct(x, y, COMPARED[m]) for x, y in zip(va, vb, strict=True)
        ]
    return Comparison(
        cells=cells,
        metrics=metrics,
        only_a=_keys(merged[merged["_merge"] == "left_only"], key_columns),
        only_b=_keys(merged[merged["_merge"] == "right_only"], key_columns),
        devices_a=sorted(map(str, pd.unique(a.measured["device"]))),
        devices_b=sorted(map(str, pd.unique(b.measured["device"]))),
        unreadable=[f"RUN_A: {p}" for p in a.problems] + [f"RUN_B: {p}" for p in b.problems],
    )


def cell_medians(df_a: pd.DataFrame, df_b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each run's medians per cell and ``cpus``: per setting for the cells where A and B share
    a setting, pooled over settings (``cpus`` "") for every other cell."""
    import pandas as pd

    from harness.report.aggregate import summarize

    by_setting = [summarize(df, (*CELL_KEYS, SETTING)) for df in (df_a, df_b)]
    settings = [_settings_per_cell(med) for med in by_setting]
    shared = {cell for cell, labels in settings[0].items() if labels & settings[1].get(cell, set())}
    out = []
    for df, med in zip((df_a, df_b), by_setting, strict=True):
        pooled = summarize(df, CELL_KEYS).assign(**{SETTING: ""})
        # .loc: a boolean list picks rows even when it is empty (``frame[[]]`` would pick columns).
        matched = med.loc[[_cell(row) in shared for row in med.itertuples(index=False)]]
        rest = pooled.loc[[_cell(row) not in shared for row in pooled.itertuples(index=False)]]
        matched = matched.assign(**{SETTING: matched[SETTING].fillna("").astype(str)})
        out.append(pd.concat([matched, rest], ignore_index=True))
    return out[0], out[1]


def _settings_per_cell(medians: pd.DataFrame) -> dict[tuple, set[str]]:
    """cell -> the ``cpus`` labels measured for it ("" for records without placement)."""
    out: dict[tuple, set[str]] = {}
    for row in medians.itertuples(index=False):
        out.setdefault(_cell(row), set()).add(str(getattr(row, SETTING) or ""))
    return out


def _cell(row) -> tuple:
    return tuple(getattr(row, k) for k in CELL_KEYS)


def _setting_key(column: pd.Series) -> pd.Series:
    """Sort settings by thread count as a number (2 threads before 10 threads)."""
    from harness.report.aggregate import setting_order

    return column.map(setting_order) if column.name == SETTING else column


def _keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return [tuple(row) for row in frame[columns].itertuples(index=False)]


def render_text(comparison: Comparison, threshold_pct: float | None) -> str:
    """A fixed-width table: one line per cell, each metric as ``A -> B (slowdown)``."""
    # A setting column only when cells were matched by setting; a pooled cell says so there.
    with_setting = SETTING in comparison.cells
    headers = ["model", "quant", "engine", *(["cpus"] if with_setting else []), "task", "L"]
    headers += [_HEADER[m] for m in comparison.metrics]
    rows = []
    for _, cell in comparison.cells.iterrows():
        row = [str(cell["model"]), str(cell["quantization"]), str(cell["engine"])]
        row += [cell[SETTING] or "all settings pooled"] if with_setting else []
        row += [str(cell["task"]), str(cell["L"])]
        for m in comparison.metrics:
            pct = cell[f"{m}_slowdown_pct"]
            flag = " !" if threshold_pct is not None and pct > threshold_pct else ""
            row.append(f"{_fmt(cell[f'{m}_a'])} -> {_fmt(cell[f'{m}_b'])} ({pct:+.1f}%){flag}")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("")
    lines.append(
        "cells: median of A -> median of B (slowdown of B vs A; + is slower, for every metric)"
    )
    if comparison.devices_a != comparison.devices_b:
        lines.append(
            f"note: A ran on {', '.join(comparison.devices_a)}, "
            f"B on {', '.join(comparison.devices_b)}"
        )
    for side, keys in (("A", comparison.only_a), ("B", comparison.only_b)):
        if keys:
            lines.append(
                f"{len(keys)} cell(s) only in {side} (not "
                f"compared), e.g. {' / '.join(map(str, keys[0]))}"
            )
    return "\n".join(lines)


_HEADER = {"itps": "ITPS tok/s", "otps": "OTPS tok/s", "ttft_s": "TTFT s", "runtime_s": "runtime s"}


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
