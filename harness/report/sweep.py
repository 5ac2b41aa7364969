"""Thread and core sweeps: which thread count on which core set is fastest at each context length.

``slm-bench run --threads 1,2 --cores all,little`` measures every (threads, cores) pair in one run
directory; each record's ``cpus`` column (:func:`harness.report.aggregate.placement_label`) names
the setting it ran with. A build (model, quantization, weights, device, engine, target) measured
with more than one setting is a sweep, and gets:

- the table "Threads and cores": per setting and L, the median ITPS and OTPS (tasks pooled), the
  fastest setting per L starred, and how far the device's default setting is from that fastest;
- the plot ``thread_sweep``: ITPS and OTPS against the setting, one line per L, as llama-bench's
  thread sweeps are read.

The trade-off tables and the quality plot rank models rather than settings: they take one setting
per build (:func:`one_setting_per_build`), so a sweep never counts one model several times there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report import noise
from harness.report.aggregate import OVERALL_KEYS, measured, summarize

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from harness.report.render import Table

BUILD_KEYS: tuple[str, ...] = ("model", "quantization", "weights", "device", "engine", "target")
SETTING_KEYS: tuple[str, ...] = (*BUILD_KEYS, "cpus")
SWEPT: dict[str, str] = {"itps": "ITPS", "otps": "OTPS"}  # metric -> its name in headers
STAR = "★"
WARN = "⚠"
NOTE = (
    f"{STAR}: fastest setting at this L; default: the device's default core set, one thread "
    "per core. default vs fastest = the default's median / the fastest's median - 1, per "
    "metric. Medians over measured requests, all tasks pooled. The trade-off tables and the "
    "quality plot, which rank models, take each build's default setting, else its fastest."
)
MISMATCH_NOTE = f" {WARN}: what the runner ran (read back from it) differs from what was asked."


# -- data -------------------------------------------------------------------------------


def sweep_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per swept build x setting x L: the summary columns of ITPS/OTPS, ``n``, and the setting's
    ``cpu_mask``, ``default``, ``mismatch``; ``fastest_<m>`` marks the best setting per L.

    Only builds measured with more than one (named) setting; empty when nothing was swept.
    Rows come by build, then L, then setting (threads, then cores): the settings a star compares
    sit together.
    """
    data = measured(df)
    if data.empty or "cpus" not in data:
        return data.iloc[0:0]
    # records made before placement was recorded
    data = data[data["cpus"].fillna("").astype(str) != ""]
    settings = data.groupby(list(BUILD_KEYS), dropna=False)["cpus"].transform("nunique")
    data = data[settings > 1]
    if data.empty:
        return data.iloc[0:0]
    summary = summarize(data, OVERALL_KEYS).merge(
        setting_facts(data), on=list(SETTING_KEYS), how="left"
    )
    per_l = summary.groupby([*BUILD_KEYS, "L"], dropna=False)
    for metric in (m for m in SWEPT if f"{m}_median" in summary):
        best = per_l[f"{metric}_median"].transform("max")
        summary[f"fastest_{metric}"] = summary[f"{metric}_median"].notna() & (
            summary[f"{metric}_median"] == best
        )
    order = [*BUILD_KEYS, "L", "order_threads", "order_cores", "order_mask", "cpus"]
    return summary.sort_values(order, kind="stable").reset_index(drop=True)


def setting_facts(data: pd.DataFrame) -> pd.DataFrame:
    """Per build x setting: the masks read back, whether it is the default, any mismatch, and
    the keys that order settings on a table or an axis (threads, then how many cores)."""
    import pandas as pd

    rows = []
    for key, part in data.groupby(list(SETTING_KEYS), dropna=False, sort=False):
        masks = _distinct(part["cpu_mask"].where(part["cpu_mask"].notna(), part["cpu_mask_asked"]))
        threads = part["threads"].where(part["threads"].notna(), part["threads_asked"]).dropna()
        mask = int(masks[0], 16) if masks else 0
        rows.append(
            {
                **dict(zip(SETTING_KEYS, key, strict=True)),
                "cpu_mask": ", ".join(masks),
                "default": bool(part["placement_default"].fillna(False).astype(bool).any()),
                "mismatch": "; ".join(_distinct(part["placement_mismatch"])),
                "order_threads": int(threads.min()) if len(threads) else 0,
                "order_cores": bin(mask).count("1"),
                "order_mask": mask,
            }
        )
    return pd.DataFrame(rows)


def _distinct(values: pd.Series) -> list[str]:
    return sorted({str(v) for v in values.dropna() if str(v)})


def default_distance(sweep: pd.DataFrame, metric: str) -> dict[tuple, float]:
    """(build..., L) -> the default setting's median / the fastest's - 1 (0 when it is the
    fastest)."""
    column = f"{metric}_median"
    if column not in sweep:
        return {}
    out = {}
    for key, at_l in sweep.groupby([*BUILD_KEYS, "L"], dropna=False, sort=False):
        default = at_l.loc[at_l["default"], column].dropna()
        best = at_l[column].max()
        if len(default) and best and best == best:
            out[key] = float(default.iloc[0]) / float(best) - 1.0
    return out


def one_setting_per_build(overall: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The per build x L summary (of the records ``df``) with one setting per build: its default
    where measured, else its fastest (highest mean OTPS median over L, ITPS where no OTPS).
    Builds with one setting, and summaries without ``cpus``, come back unchanged."""
    import pandas as pd

    if overall.empty or "cpus" not in overall:
        return overall
    defaults = default_settings(df)
    keep = []
    for key, part in overall.groupby(list(BUILD_KEYS), dropna=False, sort=False):
        if part["cpus"].nunique() > 1:
            part = part[
                part["cpus"] == _reference_setting(part, {c for k, c in defaults if k == key})
            ]
        keep.append(part)
    return pd.concat(keep).sort_index()


def default_settings(df: pd.DataFrame) -> set[tuple]:
    """(build key, cpus) of every setting whose measured records are the device's default."""
    data = measured(df)
    if data.empty or "placement_default" not in data or "cpus" not in data:
        return set()
    data = data[data["placement_default"].fillna(False).astype(bool)]
    return {(tuple(k[:-1]), k[-1]) for k in data[list(SETTING_KEYS)].itertuples(index=False)}


def _reference_setting(part: pd.DataFrame, defaults: set[str]) -> str:
    if defaults & set(part["cpus"]):
        return sorted(defaults & set(part["cpus"]))[0]
    for metric in ("otps_median", "itps_median"):
        if metric in part and part[metric].notna().any():
            return str(part.groupby("cpus")[metric].mean().idxmax())
    return str(part["cpus"].iloc[0])


# -- table ------------------------------------------------------------------------------


def sweep_table(df: pd.DataFrame) -> Table | None:
    """ "Threads and cores": one row per swept setting and L; None when nothing was swept."""
    from harness.report.render import Table

    sweep = sweep_summary(df)
    if sweep.empty:
        return None
    metrics = [m for m in SWEPT if f"{m}_median" in sweep]
    distances = {m: default_distance(sweep, m) for m in metrics}
    with_default = bool(sweep["default"].any())
    with_mismatch = bool((sweep["mismatch"] != "").any())
    # A star can follow noise: a setting measured under load or with a wide spread says so.
    reasons = [", ".join(noise.cell_reasons(row)) for _, row in sweep.iterrows()]
    with_noise = any(reasons)
    headers = ["model", "device", "setting", "cpu_mask", "L", "n"]
    headers += [f"{SWEPT[m]} median (tok/s)" for m in metrics]
    headers += (
        ["default vs fastest"] * with_default
        + ["read back"] * with_mismatch
        + [noise.COLUMN] * with_noise
    )
    rows = []
    for (_, row), why in zip(sweep.iterrows(), reasons, strict=True):
        cells = [_build_label(row), str(row["device"]), _setting_cell(row), row["cpu_mask"]]
        cells += [str(int(row["L"])), str(int(row["n"])), *(_metric_cell(row, m) for m in metrics)]
        cells += [_distance_cell(row, distances)] * with_default
        cells += [f"{WARN} {row['mismatch']}" if row["mismatch"] else ""] * with_mismatch
        cells += [f"{noise.MARK} {why}" if why else ""] * with_noise
        rows.append(cells)
    note = (
        NOTE
        + (MISMATCH_NOTE if with_mismatch else "")
        + (" " + noise.rule_note() if with_noise else "")
    )
    note += (
        " * = dummy weights (speed real, output not)."
        if (sweep["weights"] == "dummy").any()
        else ""
    )
    return Table("Threads and cores", headers, rows, note)


def _build_label(row) -> str:
    from harness.report.tradeoff import build_label

    return build_label(row)


def _setting_cell(row) -> str:
    return (
        str(row["cpus"])
        + (" (default)" if row["default"] else "")
        + (f" {WARN}" if row["mismatch"] else "")
    )


def _distance_cell(row, distances: dict[str, dict[tuple, float]]) -> str:
    """On the default setting's row: ``ITPS -12% · OTPS 0%``; empty on the other rows."""
    key = (*(row[k] for k in BUILD_KEYS), row["L"])
    if not row["default"]:
        return ""
    return " · ".join(f"{SWEPT[m]} {_percent(d[key])}" for m, d in distances.items() if key in d)


def _metric_cell(row, metric: str) -> str:
    from harness.report.render import format_value

    text = format_value(row[f"{metric}_median"], metric)
    return f"{text} {STAR}" if row.get(f"fastest_{metric}") else text


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100)}%"  # -12%; 0% when the default is the fastest


# -- plot -------------------------------------------------------------------------------


def plot_thread_sweep(sweep: pd.DataFrame, scope: str) -> Figure:
    """ITPS and OTPS (median, p10-p90 bars) against the setting, one line per build and L, the
    fastest setting of each line starred. Settings are categories, ordered by threads then cores."""
    from harness.report.plots import VS_L, new_figure

    settings = setting_axis(sweep)
    fig, axes = new_figure(ncols=len(SWEPT))
    # Room for each setting's three-line tick label, within what a report page can still show.
    fig.set_size_inches(min(max(11.2, 1.3 * len(settings) * len(SWEPT)), 24.0), 5.6)
    several_builds = sweep.groupby(list(BUILD_KEYS), dropna=False).ngroups > 1
    for ax, metric in zip(axes, SWEPT, strict=True):
        _draw_sweep_panel(ax, sweep, metric, [cpus for cpus, _ in settings], several_builds)
        ax.set_xticks(range(len(settings)), [tick for _, tick in settings], fontsize="x-small")
        ax.set_ylabel(VS_L[metric][1])
        ax.set_xlabel("setting: threads · cores (cpu list)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{SWEPT[metric]}: higher is better", fontsize="small")
    fig.suptitle(f"Threads and cores\n{scope}")
    return fig


def setting_axis(sweep: pd.DataFrame) -> list[tuple[str, str]]:
    """(cpus label, tick text) of every setting, in axis order: threads, then cores."""
    order = sweep.sort_values(["order_threads", "order_cores", "order_mask", "cpus"], kind="stable")
    defaults = set(order.loc[order["default"], "cpus"])
    ticks = []
    for cpus in dict.fromkeys(order["cpus"]):  # first appearance, in axis order
        ticks.append(
            (cpus, cpus.replace(" · ", "\n") + ("\n(default)" if cpus in defaults else ""))
        )
    return ticks


def _draw_sweep_panel(
    ax: Axes, sweep: pd.DataFrame, metric: str, settings: list[str], several_builds: bool
) -> None:
    column = f"{metric}_median"
    if column not in sweep or sweep[column].isna().all():
        ax.text(
            0.5,
            0.5,
            f"no {SWEPT[metric]} measurements",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return
    star = dict(linestyle="none", marker="*", markeredgecolor="black")
    for index, (key, line) in enumerate(sweep.groupby([*BUILD_KEYS, "L"], dropna=False, sort=True)):
        line = (
            line[line[column].notna()]
            .assign(x=lambda t: t["cpus"].map(settings.index))
            .sort_values("x")
        )
        if line.empty:
            continue
        color = f"C{index % 10}"
        label = f"L={int(key[-1])}" + (
            f" · {_build_label(line.iloc[0])} on {key[3]}" if several_builds else ""
        )
        y = line[column].astype(float)
        low, high = (
            (y - line[f"{metric}_p10"]).clip(lower=0),
            (line[f"{metric}_p90"] - y).clip(lower=0),
        )
        ax.errorbar(
            line["x"],
            y,
            yerr=[low.to_numpy(), high.to_numpy()],
            marker="o",
            color=color,
            capsize=3,
            label=label,
        )
        best = line[line[f"fastest_{metric}"]]
        ax.plot(best["x"], best[column], markersize=16, color=color, **star)
    # One legend entry for the stars of every line, in no line's color.
    ax.plot([], [], markersize=12, color="0.6", label="fastest at this L", **star)
    ax.legend(fontsize="x-small", title="median, bars = p10-p90", title_fontsize="x-small")
