"""Plots of a set of runs, as PNG and SVG.

(a) ``<metric>_vs_L``: ITPS, OTPS, TTFT and runtime against context length L, one line
    per model (median over all tasks) with a p10-p90 band. The OTPS plot also shows each
    model's decode ceiling when the run knows the device's memory bandwidth and the model's
    weight bytes: decoding one token streams every weight once, so OTPS cannot exceed
    bandwidth / weight_bytes.
(b) ``tradeoff_L<L>``: parameters (log x) against OTPS, ITPS and TTFT at one L, with the
    Pareto frontier (smaller and faster models) marked.
(c) ``peak_mem_vs_params``: peak memory against parameters at the same L.
(d) ``heatmap_otps`` and ``heatmap_ttft``: the median over model (rows, by size) x L.
(e) ``quality_vs_otps``: ``slm-bench eval``'s average quality score against OTPS at the same L.
(f) ``thread_sweep``, only for a run that swept ``--threads``/``--cores``: ITPS and OTPS against
    the setting, one line per L (harness.report.sweep).

A series is one setting as well as one build: a sweep draws a line per thread count and core set,
named in the legend (``· 2 threads · big (0-1)``) whenever the plotted runs hold more than one.

Points measured with ``weights == "dummy"`` (random weights: speed is real, output is not)
are drawn hollow and labelled "(dummy weights)".

matplotlib is imported inside the functions (the CLI must start without it), and figures
are drawn through the object API on an Agg canvas: no pyplot state, no GUI backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.report.aggregate import RunData, format_labels, load_runs, summarize_overall
from harness.report.labels import place_labels
from harness.report.quality import load_quality, plot_quality_vs_speed
from harness.report.sweep import one_setting_per_build, plot_thread_sweep, sweep_summary
from harness.report.tradeoff import pareto_front

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Series.key indexes these: new keys go at the end ([0] model, [1] quantization, [3] device,
# [4] engine).
SERIES_KEYS = ("model", "quantization", "weights", "device", "engine", "cpus")
# metric -> (file stem, y-axis label, title)
VS_L: dict[str, tuple[str, str, str]] = {
    "itps": ("itps_vs_L", "ITPS (input tokens/s)", "Prefill speed (ITPS)"),
    "otps": ("otps_vs_L", "OTPS (output tokens/s)", "Decode speed (OTPS)"),
    "ttft_s": ("ttft_vs_L", "TTFT (s)", "Time to first token (TTFT)"),
    "runtime_s": ("runtime_vs_L", "runtime (s)", "Request runtime"),
}
# metric -> higher is better?
TRADEOFF: dict[str, bool] = {"otps": True, "itps": True, "ttft_s": False}
# metric -> file stem of its model x L heat map
HEATMAPS: dict[str, str] = {"otps": "heatmap_otps", "ttft_s": "heatmap_ttft"}
L_LABEL = "context length L (cl100k tokens)"
PARAMS_LABEL = "parameters (log scale)"


@dataclass
class Series:
    """One line/point set: a model build on a device."""

    key: tuple
    label: str
    color: str
    dummy: bool
    rows: pd.DataFrame  # its rows of the overall summary, sorted by L

    @property
    def marker_face(self) -> str:
        return "none" if self.dummy else self.color


def write_plots(
    data: RunData | list[Path | str],
    out_dir: Path | str,
    L: int | None = None,
    reference=None,
    quality=None,
) -> list[Path]:
    """Draw every plot into ``out_dir``; returns the written files (a .png and .svg per plot).

    ``L`` picks the length of the trade-off and memory plots (default: the largest L that
    every series measured). Plots without data are still written, saying what is missing,
    so a report always has the same set of files.
    """
    if not isinstance(data, RunData):
        data = load_runs(data)
    overall = summarize_overall(data.df)
    series = build_series(overall, format_labels(data.df))
    scope = describe_scope(overall)
    ceilings = decode_ceilings(data)
    length = L if L is not None else default_length(series)
    _check_length(series, length)  # before drawing anything: a typo should fail fast
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for metric, (stem, _, _) in VS_L.items():
        written += save_figure(
            plot_vs_L(series, metric, scope, ceilings if metric == "otps" else {}, reference),
            out / stem,
        )
    # L=0 is a length
    written += save_figure(
        plot_tradeoff(series, length, scope),
        out / (f"tradeoff_L{length}" if series else "tradeoff"),
    )
    written += save_figure(plot_peak_memory(series, length, scope), out / "peak_mem_vs_params")
    for metric, stem in HEATMAPS.items():
        written += save_figure(plot_heatmap(series, metric, scope), out / stem)
    if quality is None:  # a report passes the quality it already loaded
        quality, _ = load_quality(run_dirs_of(data))
    # One setting per model build: a sweep must not put one model on the quality plot several times.
    ranked = one_setting_per_build(overall, data.df)
    written += save_figure(
        plot_quality_vs_speed(quality, ranked, length, scope), out / "quality_vs_otps"
    )
    if not (sweep := sweep_summary(data.df)).empty:
        written += save_figure(plot_thread_sweep(sweep, scope), out / "thread_sweep")
    return written


def run_dirs_of(data: RunData) -> list[str]:
    return sorted(set(data.df["run_dir"])) if len(data.df) and "run_dir" in data.df else []


# -- data preparation -------------------------------------------------------------------


def build_series(overall: pd.DataFrame, formats: dict[tuple, str] | None = None) -> list[Series]:
    """Split the per model x L summary into series with stable colors and legend labels;
    ``formats`` ((model, quantization, engine) -> label) names the format that ran."""
    if overall.empty:
        return []
    if "cpus" not in overall:  # a summary built by hand, without placement: one setting
        overall = overall.assign(cpus="")
    # A legend names the setting only when the plot holds several: one setting is no news
    # (tables keep their column, which says where each row ran).
    with_cpus = overall["cpus"].fillna("").nunique() > 1
    several_devices = overall["device"].nunique() > 1
    several_engines = overall["engine"].nunique() > 1
    palette = [f"C{i}" for i in range(10)]
    series = []
    for index, (key, rows) in enumerate(
        overall.groupby(list(SERIES_KEYS), sort=True, dropna=False)
    ):
        model, quantization, weights, device, engine, cpus = key
        shown = (formats or {}).get((model, quantization, engine), quantization)
        label = (
            f"{short_model_name(model)} ({shown})"
            + (f" [{engine}]" if several_engines else "")
            + (f" on {device}" if several_devices else "")
        )
        label += f" · {cpus or 'cpus not recorded'}" if with_cpus else ""
        dummy = weights == "dummy"
        if dummy:
            label += " (dummy weights)"
        series.append(Series(key, label, palette[index % 10], dummy, rows.sort_values("L")))
    return series


def short_model_name(model: str) -> str:
    """A model given as a path (an exported directory, a .gguf) is labelled by its last part:
    a legend cannot hold /tmp/.../train/slimlm-micro. Tables keep the full name."""
    return model.rstrip("/").rsplit("/", 1)[-1] if "/" in model else model


def describe_scope(overall: pd.DataFrame) -> str:
    """'device: X · quantization: Y', the line every title carries."""
    if overall.empty:
        return "no measurements"
    devices = ", ".join(sorted(map(str, overall["device"].unique())))
    quantizations = ", ".join(sorted(map(str, overall["quantization"].unique())))
    return f"device: {devices} · quantization: {quantizations}"


def decode_ceilings(data: RunData) -> dict[tuple, float]:
    """(model, quantization, device, engine) -> bandwidth-bound OTPS limit, for runs that carry
    both inputs.

    Needs ``device_profile.memory_bandwidth_gbps`` (GB/s, 1e9 bytes) and ``bundle.weight_bytes``
    in run.json.
    """
    ceilings = {}
    for info in data.infos.values():
        profile = getattr(info, "device_profile", None) or {}
        bandwidth = profile.get("memory_bandwidth_gbps") if isinstance(profile, dict) else None
        weight_bytes = (info.bundle or {}).get("weight_bytes")
        if bandwidth and weight_bytes:
            device = info.device.model or info.device.serial or "unknown"
            ceilings[(info.spec.model, info.spec.quantization, device, info.spec.engine)] = (
                bandwidth * 1e9 / weight_bytes
            )
    return ceilings


def default_length(series: list[Series]) -> int:
    """The largest L that every series measured (else the largest L at all; 0 without data)."""
    sets = [set(s.rows["L"].astype(int)) for s in series]
    if not sets:
        return 0
    common = set.intersection(*sets)
    return max(common) if common else max(set.union(*sets))


def _check_length(series: list[Series], length: int) -> None:
    measured = sorted({int(v) for s in series for v in s.rows["L"]})
    if measured and length not in measured:
        raise UserError(
            f"no measurements at L={length}; fix: pass --L with one "
            f"of the measured lengths {', '.join(map(str, measured))}"
        )


def points_at(series: list[Series], metric: str, length: int) -> list[tuple[Series, pd.Series]]:
    """(series, its summary row at L) for series that have params and the metric there."""
    column = f"{metric}_median"
    points = []
    for s in series:
        if column not in s.rows:
            continue
        rows = s.rows[(s.rows["L"] == length) & s.rows[column].notna() & s.rows["params"].notna()]
        if not rows.empty:
            points.append((s, rows.iloc[0]))
    return points


# -- figures ----------------------------------------------------------------------------


def new_figure(ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6 * ncols if ncols > 1 else 7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def empty_figure(title: str, message: str) -> Figure:
    fig, (ax,) = new_figure()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def plot_vs_L(
    series: list[Series], metric: str, scope: str, ceilings: dict[tuple, float], reference=None
) -> Figure:
    """Median of ``metric`` against L per series, with its p10-p90 band (and OTPS ceilings)."""
    _, ylabel, title = VS_L[metric]
    full_title = f"{title} vs context length\n{scope}"
    column = f"{metric}_median"
    drawn = [s for s in series if column in s.rows and s.rows[column].notna().any()]
    if not drawn:
        return empty_figure(full_title, f"no {title} measurements in these runs")
    fig, (ax,) = new_figure()
    # A sweep gives one model several series: its published points and ceiling are drawn once.
    once: set[tuple] = set()
    for s in drawn:
        rows = s.rows[s.rows[column].notna()]
        ax.fill_between(
            rows["L"],
            rows[f"{metric}_p10"],
            rows[f"{metric}_p90"],
            color=s.color,
            alpha=0.15,
            linewidth=0,
        )
        ax.plot(
            rows["L"],
            rows[column],
            marker="o",
            color=s.color,
            markerfacecolor=s.marker_face,
            label=s.label,
        )
        if reference is not None and ("reference", s.key[0]) not in once:
            from harness.report.reference import model_key

            once.add(("reference", s.key[0]))
            pub = reference[reference["model_key"] == model_key(s.key[0])].sort_values("L")
            if len(pub):
                ax.plot(
                    pub["L"],
                    pub[metric],
                    marker="x",
                    linestyle=":",
                    color=s.color,
                    label=f"{s.key[0]}: {pub['device'].iloc[0]}",
                )
        ceiling_key = (s.key[0], s.key[1], s.key[3], s.key[4])  # engines pack weights differently
        ceiling = ceilings.get(ceiling_key) if ceiling_key not in once else None
        once.add(ceiling_key)
        if ceiling:
            ax.axhline(
                ceiling,
                color=s.color,
                linestyle="--",
                linewidth=1,
                label=(
                    f"decode ceiling {short_model_name(s.key[0])}: {ceiling:,.0f} tok/s "
                    "(bandwidth / weight bytes)"
                ),
            )
    ax.set_xticks(sorted({int(v) for s in drawn for v in s.rows["L"]}))
    ax.set_xlabel(L_LABEL)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(full_title)
    ax.legend(fontsize="small", title="median, band = p10-p90", title_fontsize="small")
    return fig


def plot_tradeoff(series: list[Series], length: int, scope: str) -> Figure:
    """Parameters (log x) against OTPS, ITPS and TTFT at ``length``, Pareto frontier marked."""
    title = f"Size / speed trade-off at L={length}\n{scope}"
    if not any(points_at(series, metric, length) for metric in TRADEOFF):
        return empty_figure(title, f"no measurements with a parameter count at L={length}")
    fig, axes = new_figure(ncols=len(TRADEOFF))
    for ax, (metric, higher) in zip(axes, TRADEOFF.items(), strict=True):
        _draw_tradeoff_panel(ax, points_at(series, metric, length), metric, higher)
    fig.suptitle(title)
    return fig


def _draw_tradeoff_panel(ax: Axes, points, metric: str, higher_is_better: bool) -> None:
    _, ylabel, _ = VS_L[metric]
    better = "higher" if higher_is_better else "lower"
    ax.set_title(
        f"{ylabel.split(' (')[0]}: {better} is better, fewer params is better", fontsize="small"
    )
    _style_params_axis(ax, ylabel)
    if not points:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    xs = [float(row["params"]) for _, row in points]
    ys = [float(row[f"{metric}_median"]) for _, row in points]
    _fit_log_x(ax, xs)
    for (s, row), x, y in zip(points, xs, ys, strict=True):
        low, high = row.get(f"{metric}_p10", y), row.get(f"{metric}_p90", y)
        ax.errorbar(
            x,
            y,
            yerr=[[max(y - low, 0)], [max(high - y, 0)]],
            fmt="o",
            color=s.color,
            markerfacecolor=s.marker_face,
            markersize=7,
            capsize=3,
            label=s.label,
        )
    front = pareto_front(xs, ys, higher_is_better)
    ax.plot(
        [xs[i] for i in front],
        [ys[i] for i in front],
        linestyle="--",
        color="0.35",
        zorder=0,
        label="Pareto frontier",
    )
    ax.scatter(
        [xs[i] for i in front],
        [ys[i] for i in front],
        s=220,
        facecolors="none",
        edgecolors="0.35",
        zorder=0,
    )
    names = [short_model_name(s.key[0]) for s, _ in points]
    place_labels(ax, list(zip(xs, ys, strict=True)), names)
    ax.legend(fontsize="x-small")


def plot_peak_memory(series: list[Series], length: int, scope: str) -> Figure:
    """Median peak memory (MiB) against parameters at ``length``."""
    title = f"Peak memory vs parameters at L={length}\n{scope}"
    points = points_at(series, "peak_mem_bytes", length)
    if not points:
        return empty_figure(
            title, f"no peak-memory measurements with a parameter count at L={length}"
        )
    fig, (ax,) = new_figure()
    _style_params_axis(ax, "peak memory (MiB)")
    _fit_log_x(ax, [float(row["params"]) for _, row in points])
    xys = [(float(row["params"]), float(row["peak_mem_bytes_median"]) / 2**20) for _, row in points]
    for (s, _), (x, y) in zip(points, xys, strict=True):
        ax.plot(
            x, y, "o", color=s.color, markerfacecolor=s.marker_face, markersize=8, label=s.label
        )
    ax.set_ylim(bottom=0)
    place_labels(ax, xys, [short_model_name(s.key[0]) for s, _ in points])
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_heatmap(series: list[Series], metric: str, scope: str) -> Figure:
    """Median ``metric`` over model x L, models ordered by size, each cell labelled with its
    value."""
    _, label, title = VS_L[metric]
    title = f"{title} over model x L\n{scope}"
    ordered = sorted(
        (s for s in series if f"{metric}_median" in s.rows),
        key=lambda s: (
            float(s.rows["params"].max()) if s.rows["params"].notna().any() else 0.0,
            s.label,
        ),
    )
    lengths = sorted({int(v) for s in ordered for v in s.rows["L"]})
    if not ordered or not lengths:
        return empty_figure(title, f"no {label} measurements")
    import numpy as np

    grid = np.full((len(ordered), len(lengths)), np.nan)
    for i, s in enumerate(ordered):
        for _, row in s.rows.iterrows():
            grid[i, lengths.index(int(row["L"]))] = float(row[f"{metric}_median"])
    fig, (ax,) = new_figure()
    # Room for the model labels on the left (long paths of exported models) and the colorbar.
    label_inches = 0.075 * max(len(s.label) for s in ordered)
    fig.set_size_inches(
        max(6.0, 1.1 * len(lengths) + 3.0 + label_inches), max(2.5, 0.45 * len(ordered) + 1.8)
    )
    ax.grid(False)
    # Green is good: high OTPS, low TTFT.
    image = ax.imshow(grid, aspect="auto", cmap="viridis" if metric == "otps" else "viridis_r")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(ordered)), [s.label for s in ordered], fontsize="small")
    ax.set_xlabel(L_LABEL)
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            dark = value < middle if metric == "otps" else value > middle
            ax.text(
                j,
                i,
                f"{value:.3g}",
                ha="center",
                va="center",
                fontsize="x-small",
                color="white" if dark else "black",
            )
    ax.set_title(title)
    return fig


def _style_params_axis(ax: Axes, ylabel: str) -> None:
    from matplotlib.ticker import NullFormatter

    from harness.report.logticks import ParamsFormatter, ParamsLocator

    ax.set_xscale("log")
    # Models of one study often sit within a decade: round steps as dense as their labels fit
    # (100M, 200M, 300M; 100M, 1B, 10B), never labels that run into each other.
    ax.xaxis.set_major_locator(ParamsLocator())
    ax.xaxis.set_major_formatter(ParamsFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15, y=0.1)
    ax.set_xlabel(PARAMS_LABEL)
    ax.set_ylabel(ylabel)


def _fit_log_x(ax: Axes, xs: list[float]) -> None:
    """A single model (or several of one size) would give a zero-width log axis: widen it.

    Called before drawing: fixing the limits first stops autoscale from trying a zero width.
    """
    if xs and min(xs) == max(xs):
        ax.set_xlim(xs[0] / 2, xs[0] * 2)


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.svg``."""
    import matplotlib

    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=120)
    # Text stays text in the SVG (searchable, smaller); no timestamp, so same data -> same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "slm-bench"}):
        fig.savefig(svg, metadata={"Date": None})
    return [png, svg]
