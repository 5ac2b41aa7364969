"""A soak's report: its summary (soak.json), and one figure of OTPS and temperature over time with
each cluster's clock, rendered into ``DIR/report/`` like a run's report."""

from __future__ import annotations

from pathlib import Path


def write_soak_report(out_dir: Path, log=print) -> Path:
    from harness.report.plots import save_figure
    from harness.report.render import Table, render_html, render_markdown
    from harness.results.journal import load, read_run_info
    from harness.soak import read_samples, summarize

    out_dir = Path(out_dir)
    summary = summarize(out_dir)
    records, problems = load(out_dir)
    samples = read_samples(out_dir)
    info = read_run_info(out_dir)
    report = out_dir / "report"
    report.mkdir(parents=True, exist_ok=True)
    (report / "plots").mkdir(exist_ok=True)
    plots = save_figure(plot_soak(records, samples, summary), report / "plots" / "soak")
    rows = [[k, _fmt(v)] for k, v in summary.items()]
    where = ""
    if info is not None:
        placement = (getattr(info, "placements", None) or [{}])[0]
        where = (
            f"{info.spec.model} ({info.spec.quantization}) on "
            f"{info.device.model or info.device.serial}, {info.spec.tasks[0]} at "
            f"L={info.spec.lengths[0]}, {placement.get('threads')} threads on "
            f"{'+'.join(placement.get('clusters') or [])} (cpu {placement.get('cores')})"
        )
    note = (
        "peak: median OTPS of the first minute's requests; sustained: median of the last "
        "third; first drop: when 5 requests in a row first decoded more than 10% below "
        "the peak (their median); peak temperature: the hottest zone or battery reading. " + where
    )
    tables = [Table("Soak summary", ["metric", "value"], rows, note)]
    title = f"slm-bench soak: {out_dir.name}"
    (report / "report.md").write_text(
        render_markdown(title, "", problems, tables, plots, report), encoding="utf-8"
    )
    html = report / "report.html"
    html.write_text(render_html(title, "", problems, tables, plots), encoding="utf-8")
    log(f"report: {html}")
    return html


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_soak(records, samples: list[dict], summary: dict):
    """Top: OTPS per request over the soak, the peak and sustained medians as lines. Bottom:
    the hottest zone and the battery (left axis) and each cluster's clock (right axis)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    points = sorted(
        (r.soak_elapsed_s, r.otps)
        for r in records
        if not r.warmup and r.status == "ok" and r.otps and r.soak_elapsed_s is not None
    )
    if points:
        top.plot(
            [t for t, _ in points],
            [v for _, v in points],
            marker="o",
            markersize=3,
            label="OTPS per request",
        )
    for key, style in (("peak_otps", "--"), ("sustained_otps", ":")):
        if summary.get(key):
            top.axhline(
                summary[key],
                linestyle=style,
                color="grey",
                label=f"{key.replace('_', ' ')}: {summary[key]:.1f}",
            )
    top.set_ylabel("OTPS (output tokens/s)")
    top.set_title("Sustained decoding: speed, heat and clocks over time")
    top.legend(fontsize="small")
    times = [s["elapsed_s"] for s in samples]
    hottest = [max(s["thermal_zones_c"]) if s.get("thermal_zones_c") else None for s in samples]
    if any(v is not None for v in hottest):
        bottom.plot(times, hottest, color="C3", label="hottest zone (°C)")
    if any(s.get("battery_temp_c") is not None for s in samples):
        bottom.plot(
            times, [s.get("battery_temp_c") for s in samples], color="C1", label="battery (°C)"
        )
    bottom.set_ylabel("temperature (°C)")
    bottom.set_xlabel("seconds into the soak")
    clocks = bottom.twinx()
    clusters = sorted({name for s in samples for name in (s.get("cpu_freq_khz") or {})})
    for i, name in enumerate(clusters):
        clocks.plot(
            times,
            [(s.get("cpu_freq_khz") or {}).get(name, float("nan")) / 1e6 for s in samples],
            linestyle="--",
            color=f"C{(i + 4) % 10}",
            label=f"{name} clock (GHz)",
        )
    clocks.set_ylabel("scaling_cur_freq (GHz)")
    handles = bottom.get_legend_handles_labels()
    more = clocks.get_legend_handles_labels()
    if handles[0] or more[0]:
        bottom.legend(
            handles[0] + more[0], handles[1] + more[1], fontsize="small", loc="lower left"
        )
    return fig
