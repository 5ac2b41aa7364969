"""The trade-off tables of a grid report: which models are worth it at each context length.

All of them read the per model x L summary (tasks pooled, medians over measured requests):

- **Pareto fronts** per L: models that no other model beats on (parameters, TTFT) — none is
  smaller *and* answers sooner — and on (peak memory, OTPS).
- **Choose a model**: under a TTFT budget (default 2 s and 10 s) and the device's memory budget,
  the largest model that meets both, per L. "Largest" because, in the study's framing, more
  parameters buy quality; the budget says how many a phone can afford.
- **Decode vs the bandwidth ceiling**: decoding one token reads every weight once, so OTPS
  cannot exceed memory bandwidth / weight bytes; the table says how close each model gets.

Rows measured with dummy weights say so: their speed is real, their output is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from harness.report.aggregate import RunData
    from harness.report.render import Table

DEFAULT_TTFT_BUDGETS_S: tuple[float, ...] = (2.0, 10.0)
BUILD_KEYS = ("model", "quantization", "weights", "engine")  # one row of a trade-off table
MIB = 2**20


def pareto_front(xs: list[float], ys: list[float], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point beats, sorted by x.

    A point is beaten when another has no larger x (parameters, memory) and an equal-or-better
    y, and is strictly better in one of the two.
    """

    def at_least_as_good(a: float, b: float) -> bool:
        return a >= b if higher_is_better else a <= b

    front = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        beaten = any(
            xs[j] <= x and at_least_as_good(ys[j], y) and (xs[j] < x or ys[j] != y)
            for j in range(len(xs))
            if j != i
        )
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: xs[i])


def build_label(row) -> str:
    """'model (quant)', plus the engine when it is not the default and a dummy-weights mark."""
    label = f"{row['model']} ({row['quantization']})"
    if row.get("engine") and row["engine"] != "tvm":
        label += f" [{row['engine']}]"
    if row.get("weights") == "dummy":
        label += " *"
    return label


def pareto_table(overall: pd.DataFrame) -> Table:
    """Per device and L: the Pareto front on (params, TTFT) and on (peak memory, OTPS)."""
    from harness.report.render import Table

    rows = []
    for (device, length), at_l in overall.groupby(["device", "L"], sort=True):
        fronts = []
        for x, y, higher, fmt in (
            ("params", "ttft_s_median", False, _fmt_ttft),
            ("peak_mem_bytes_median", "otps_median", True, _fmt_otps),
        ):
            pts = at_l.dropna(subset=[x, y]) if {x, y} <= set(at_l.columns) else at_l.iloc[0:0]
            if pts.empty:
                fronts.append("n/a")
                continue
            idx = pareto_front(pts[x].astype(float).tolist(), pts[y].astype(float).tolist(), higher)
            fronts.append(", ".join(f"{build_label(pts.iloc[i])} {fmt(pts.iloc[i])}" for i in idx))
        rows.append([str(device), str(length), *fronts])
    note = (
        "A model is on a front when no other model is smaller (parameters; "
        "peak memory) and at least as fast (TTFT; OTPS). Listed from small "
        "to large. * = dummy weights (speed real, output not)."
    )
    return Table(
        "Pareto-optimal models per L",
        ["device", "L", "on (parameters, TTFT)", "on (peak memory, OTPS)"],
        rows,
        note,
    )


def choose_model_table(
    overall: pd.DataFrame,
    memory_budgets: dict[str, int | None],
    ttft_budgets_s=DEFAULT_TTFT_BUDGETS_S,
) -> Table:
    """Per device and L, for each TTFT budget: the largest model within it and the memory budget."""
    from harness.report.render import Table

    rows = []
    for (device, length), at_l in overall.groupby(["device", "L"], sort=True):
        budget = memory_budgets.get(str(device))
        cells = [str(device), str(length), f"{budget / MIB:,.0f}" if budget else "none known"]
        for ttft_budget in ttft_budgets_s:
            fits = (
                at_l[at_l["ttft_s_median"].astype(float) <= ttft_budget]
                if "ttft_s_median" in at_l
                else at_l.iloc[0:0]
            )
            if budget and "peak_mem_bytes_median" in fits:
                fits = fits[fits["peak_mem_bytes_median"].fillna(0).astype(float) <= budget]
            fits = fits.dropna(subset=["params"])
            if fits.empty:
                cells.append("none")
                continue
            best = fits.loc[fits["params"].astype(float).idxmax()]
            cells.append(
                f"{build_label(best)}: {_fmt_params(best['params'])}, TTFT {_fmt_ttft(best)}"
            )
        rows.append(cells)
    headers = ["device", "L", "memory budget (MiB)", *(f"TTFT <= {b:g} s" for b in ttft_budgets_s)]
    note = (
        "The largest model (parameters) whose median TTFT is within the budget "
        "and whose measured peak memory is within the device profile's memory "
        "budget (the device's RAM where the profile sets none). * = dummy weights."
    )
    return Table("Choose a model", headers, rows, note)


def ceiling_table(overall: pd.DataFrame, ceilings: dict[tuple, float]) -> Table | None:
    """Median OTPS as a percentage of the bandwidth ceiling, per model build and L."""
    from harness.report.render import Table

    if not ceilings or "otps_median" not in overall:
        return None
    lengths = sorted(int(v) for v in overall["L"].unique())
    rows = []
    for key, part in overall.groupby(
        ["model", "quantization", "device", "engine", "weights"], sort=True, dropna=False
    ):
        ceiling = ceilings.get(key[:4])
        if not ceiling:
            continue
        by_l = {
            int(r["L"]): float(r["otps_median"])
            for _, r in part.iterrows()
            if r["otps_median"] == r["otps_median"]
        }
        label = build_label(part.iloc[0])
        rows.append(
            [
                label,
                str(key[2]),
                f"{ceiling:,.0f}",
                *(f"{100 * by_l[n] / ceiling:.0f}%" if n in by_l else "" for n in lengths),
            ]
        )
    if not rows:
        return None
    note = (
        "ceiling = the device's memory bandwidth / the bundle's weight bytes "
        "(every weight is read once per decoded token); cells = median OTPS / "
        "ceiling. KV-cache reads, which grow with L, are not in the ceiling."
    )
    return Table(
        "Decode vs the bandwidth ceiling",
        ["model", "device", "ceiling (tok/s)", *(f"L={n}" for n in lengths)],
        rows,
        note,
    )


def memory_budgets(data: RunData) -> dict[str, int | None]:
    """Device label -> its profile's memory budget, else its RAM (what run.json says)."""
    budgets: dict[str, int | None] = {}
    for info in data.infos.values():
        device = info.device.model or info.device.serial or "unknown"
        profile = getattr(info, "device_profile", None) or {}
        budget = profile.get("memory_budget_bytes") if isinstance(profile, dict) else None
        budgets[device] = budget or budgets.get(device) or info.device.ram_bytes
    return budgets


def tradeoff_tables(
    data: RunData,
    overall: pd.DataFrame,
    ceilings: dict[tuple, float],
    ttft_budgets_s=DEFAULT_TTFT_BUDGETS_S,
) -> list[Table]:
    """The tables above that the data supports: fronts and choices need two model builds."""
    tables = []
    if not overall.empty and overall.groupby(list(BUILD_KEYS), dropna=False).ngroups > 1:
        tables += [
            pareto_table(overall),
            choose_model_table(overall, memory_budgets(data), ttft_budgets_s),
        ]
    if (ceiling := ceiling_table(overall, ceilings)) is not None:
        tables.append(ceiling)
    return tables


def _fmt_params(value) -> str:
    value = float(value)
    return (
        f"{value / 1e9:.2f}B"
        if value >= 1e9
        else f"{value / 1e6:.0f}M"
        if value >= 1e6
        else f"{value / 1e3:.0f}k"
    )


def _fmt_ttft(row) -> str:
    value = float(row["ttft_s_median"])
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1e3:.3g} ms"


def _fmt_otps(row) -> str:
    return f"{float(row['otps_median']):.1f} tok/s"
