"""Render run directories into report.md, report.html (self-contained) and summary.csv.

Tables show, per model x L (all tasks pooled) and per task, the median of each metric with
its p10-p90 range; a ``cpus`` column names the thread count and core set where the records say
(a sweep adds the "Threads and cores" table, harness.report.sweep). With a baseline, each cell
instead shows the value and its ratio to the baseline's matching cell (same model, quantization,
task and L; and the same setting where the baseline measured it), the way llama.cpp's
compare-llama-bench reports a speedup. Where a phone's fuel gauge measured it, energy per token
(gross and above idle) joins the metrics. Problems (unreadable journal lines, failed cells, mixed
prompt sets, cells measured under load or with a wide spread (harness.report.noise), a device that
was charging) are listed first; a "Devices" table (harness.report.devices) gives each device's
clusters and the settings measured; where a device model was measured by two or more phones (a
pool), a "Unit-to-unit variation" table (harness.report.units) gives each phone's medians and
their spread; the metric definitions close the report.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from harness import __version__, paths
from harness.report.aggregate import (
    GROUP_KEYS,
    RunData,
    device_label,
    format_label,
    load_runs,
    measured,
    present_metrics,
    setting_order,
    status_counts,
    summarize,
    summary_table,
    with_format_labels,
)
from harness.report.noise import COLUMN as NOISE_COLUMN
from harness.report.noise import any_flagged, noise_cell, rule_note
from harness.results import schema
from harness.results.schema import Task, now_rfc3339

if TYPE_CHECKING:
    import pandas as pd

# metric -> column header; the order of the table columns.
METRIC_HEADERS: dict[str, str] = {
    "itps": "ITPS (tok/s)",
    "otps": "OTPS (tok/s)",
    "ttft_s": "TTFT (s)",
    "runtime_s": "runtime (s)",
    "input_tokens": "input tokens",
    "peak_mem_bytes": "peak mem (MiB)",
    # Per processed (input + output) token, gross and above the idle draw
    # (harness.devices.conditions).
    "energy_j_per_token": "energy (mJ/token)",
    "energy_j_per_token_above_idle": "energy above idle (mJ/token)",
}
MILLI = {"energy_j_per_token", "energy_j_per_token_above_idle"}  # stored in J, shown in mJ
ENERGY_NOTE = (
    " energy: the fuel gauge's mean power x runtime per processed (input + output) token; "
    "above idle subtracts the device's draw at rest, sampled before the run."
)
RANGED = {"itps", "otps", "ttft_s", "runtime_s"}  # metrics whose spread is worth a p10-p90
BASELINE_KEYS = ("model", "quantization", "task", "L")
MAX_LISTED_FAILURES = 20
TASK_ORDER: tuple[str, ...] = get_args(Task)


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class ReportOutputs:
    """What ``write_report`` wrote, and the summary it computed (for ``--json``)."""

    out_dir: Path
    markdown: Path
    html: Path
    csv: Path
    plots: list[Path]
    summary: pd.DataFrame = field(repr=False)
    # journal lines skipped: "<run>/records.jsonl:LINE: reason"
    unreadable: list[str] = field(default_factory=list)
    # units.csv: each phone's rows where a device model was measured by two or more phones
    units_csv: Path | None = None

    def files(self) -> list[Path]:
        units = [self.units_csv] if self.units_csv else []
        return [self.markdown, self.html, self.csv, *units, *self.plots]


def default_out_dir(run_dirs: list[Path | str]) -> Path:
    """``<repo>/reports/<run name>``, or ``<repo>/reports/compare-<n>`` for several runs."""
    name = Path(run_dirs[0]).resolve().name if len(run_dirs) == 1 else f"compare-{len(run_dirs)}"
    return paths.reports_dir() / name


def write_report(
    run_dirs: list[Path | str],
    out_dir: Path | str | None = None,
    baseline: Path | str | list[Path | str] | None = None,
    L: int | None = None,
    title: str | None = None,
    reference: str | None = None,
) -> ReportOutputs:
    """Write report.md, report.html, summary.csv and ``plots/`` for ``run_dirs`` into ``out_dir``.

    ``reference`` (e.g. ``slimlm-s24``) adds published figures: a measured-vs-published table
    and the published points on the vs-L plots, each labelled with the device it came from."""
    from harness.report.aggregate import summarize_overall
    from harness.report.devices import charging_notes, devices_table
    from harness.report.noise import noise_problems, with_noise
    from harness.report.plots import decode_ceilings, run_dirs_of, write_plots
    from harness.report.profile import copy_charts, load_profiles, profile_tables
    from harness.report.quality import load_quality, quality_table
    from harness.report.reference import load_quality_reference, load_reference
    from harness.report.sweep import one_setting_per_build, sweep_table
    from harness.report.tradeoff import tradeoff_tables
    from harness.report.units import FILE as UNITS_FILE
    from harness.report.units import unit_rows, units_table

    data = load_runs(list(run_dirs))
    base = (
        load_runs([baseline] if isinstance(baseline, (str, Path)) else list(baseline))
        if baseline
        else None
    )
    out = Path(out_dir) if out_dir is not None else default_out_dir(list(run_dirs))

    summary = with_noise(with_baseline(summary_table(data.df), base))
    shown = with_format_labels(summary, data.df)
    ref = load_reference(reference) if reference else None
    quality, quality_problems = load_quality(run_dirs_of(data))
    # first: a bad --L fails before anything is written
    plots = write_plots(data, out / "plots", L=L, reference=ref, quality=quality)
    profiles, profile_problems = load_profiles(run_dirs_of(data))
    plots += copy_charts(profiles, out / "plots")
    out.mkdir(parents=True, exist_ok=True)
    title = title or f"slm-bench report: {out.name}"
    tables = [
        runs_table(data),
        *filter(None, [devices_table(data)]),
        *result_tables(shown, base is not None),
    ]
    if (sweep := sweep_table(data.df)) is not None:
        tables.append(sweep)
    if (memory := memory_table(data)) is not None:
        tables.append(memory)
    units = unit_rows(data.df)  # empty unless a device model was measured by two phones
    if (table := units_table(units, data.df)) is not None:
        tables.append(table)
    # Trade-offs rank models, not settings: a sweep's build enters them once.
    ranked = one_setting_per_build(summarize_overall(data.df), data.df)
    tables += tradeoff_tables(data, ranked, decode_ceilings(data))
    if (table := quality_table(quality)) is not None:
        tables.append(table)
        if reference and (quality_ref := load_quality_reference(reference)) is not None:
            tables.append(reference_quality_table(quality, quality_ref, reference))
    if ref is not None:
        tables.append(reference_table(data, ref, reference))
    tables += profile_tables(profiles)
    problems = list_problems(data, base) + quality_problems + over_budget_notes(data)
    problems += profile_problems
    problems += noise_problems(shown) + charging_notes(data)
    baseline_note = (
        f"Baseline: {', '.join(sorted(base.infos) or ['(no run.json)'])}" if base else ""
    )

    md_path, html_path, csv_path = out / "report.md", out / "report.html", out / "summary.csv"
    md_path.write_text(
        render_markdown(title, baseline_note, problems, tables, plots, out), encoding="utf-8"
    )
    html_path.write_text(
        render_html(title, baseline_note, problems, tables, plots), encoding="utf-8"
    )
    summary.to_csv(csv_path, index=False)
    units_csv = out / UNITS_FILE
    if units.empty:
        units_csv.unlink(missing_ok=True)  # an earlier report's, into the same folder
        units_csv = None
    else:
        units.to_csv(units_csv, index=False)
    unreadable = data.problems + [f"baseline {p}" for p in (base.problems if base else [])]
    return ReportOutputs(out, md_path, html_path, csv_path, plots, summary, unreadable, units_csv)


# -- content ----------------------------------------------------------------------------


def reference_table(data: RunData, ref, name: str) -> Table:
    """Measured median vs published value, and their ratio, per model x L present in both."""
    from harness.report.aggregate import summarize_overall
    from harness.report.reference import METRICS, compare

    rows = []
    device_label = ref["device"].iloc[0] if len(ref) else name
    # Per setting, so a sweep's rows say which thread count and core set each measurement used.
    for cpus, overall in summarize_overall(measured(data.df)).groupby("cpus", sort=True):
        for r in compare(overall, ref):
            cells = [r["model"], str(r["L"]), str(r["device"]) + (f" · {cpus}" if cpus else "")]
            for metric in METRICS:
                mine, theirs, ratio = r[metric]
                shown = (
                    f"{format_value(mine, metric)} / {format_value(theirs, metric)} ({ratio:.2f}x)"
                )
                cells.append(shown if ratio else "n/a")
            rows.append(cells)
    note = (
        f"measured / published ({device_label}); the paper's L counts cl100k tokens "
        "of context, as ours does; L=0 is its one-line question without a document."
    )
    if not rows:
        note = f"No model and L of these runs appears in the reference {name} ({device_label})."
    return Table(
        f"Reference: {name}",
        ["model", "L", "measured on", "ITPS (tok/s)", "OTPS (tok/s)", "TTFT (s)", "runtime (s)"],
        rows,
        note,
    )


def with_baseline(summary: pd.DataFrame, base: RunData | None) -> pd.DataFrame:
    """Add ``<metric>_baseline`` (the baseline's median) and ``<metric>_ratio`` (this /
    baseline)."""
    if base is None or summary.empty:
        return summary
    lookup = baseline_medians(base)
    summary = summary.copy()
    # Its own setting's baseline where the baseline measured that setting, else the pooled one.
    cells = [
        lookup.get(_baseline_key(row, True)) or lookup.get(_baseline_key(row, False), {})
        for _, row in summary.iterrows()
    ]
    for metric in present_metrics(measured(base.df)):
        column = f"{metric}_median"
        if column not in summary:
            continue
        reference = [cell.get(metric) for cell in cells]
        summary[f"{metric}_baseline"] = reference
        summary[f"{metric}_ratio"] = [
            value / ref if ref and not _missing(value) else math.nan
            for value, ref in zip(summary[column], reference, strict=True)
        ]
    return summary


def baseline_medians(base: RunData) -> dict[tuple, dict[str, float]]:
    """(model, quantization, task, L, cpus) -> the baseline's metric medians; task "all" pools
    tasks, cpus None pools every thread count and core set.

    Grouped on the matching keys only, so a baseline measured on several devices or
    builds of one model yields one pooled reference per cell. A cell takes the baseline of its
    own setting where the baseline measured it (a sweep against a sweep), else the pooled one
    (a run against one made before placement was recorded, or on another device's cores).
    """
    lookup: dict[tuple, dict[str, float]] = {}
    for keys in (BASELINE_KEYS, (*BASELINE_KEYS, "cpus")):
        per_task = summarize(base.df, keys)
        pooled = summarize(base.df, tuple(k for k in keys if k != "task")).assign(task="all")
        for table in (per_task, pooled):
            metrics = [m for m in METRIC_HEADERS if f"{m}_median" in table]
            for _, row in table.iterrows():
                lookup[_baseline_key(row, "cpus" in keys)] = {
                    m: row[f"{m}_median"] for m in metrics
                }
    return lookup


def _baseline_key(row, by_setting: bool) -> tuple:
    cells = tuple(str(row[k]) if k != "L" else int(row[k]) for k in BASELINE_KEYS)
    return (*cells, str(row.get("cpus") or "") if by_setting else None)


def reference_quality_table(quality, ref, name: str) -> Table:
    """Our average quality score beside the published one, per model in both (different test
    sets)."""
    from harness.report.reference import compare_quality

    rows = [
        [model, dataset, f"{ours:.3f}", f"{theirs:.3f}"]
        for model, dataset, ours, theirs in compare_quality(quality, ref)
    ]
    source = ref["source"].iloc[0] if len(ref) else name
    note = (
        f"published: {source}. Not the same test set or annotator as "
        "ours, so compare the ordering of models more than the values."
    )
    if not rows:
        note = f"No evaluated model of these runs appears in the quality reference {name}."
    return Table(
        f"Reference quality: {name}",
        ["model", "our data", "our avg score", "published avg score"],
        rows,
        note,
    )


def runs_table(data: RunData) -> Table:
    counts = {row["run"]: row for _, row in status_counts(data.df).iterrows()}
    # A run's folder is named by its run id unless --out chose another name: show the id only then.
    with_id = any(name.rsplit("/", 1)[-1] != info.run_id for name, info in data.infos.items())
    headers = [
        "run",
        *(["run id"] if with_id else []),
        "model",
        "quant",
        "device",
        "engine / target",
        "prompt set",
    ]
    headers += ["ok", "failed", "skipped", "warmup", "created"]
    rows = []
    for name, info in data.infos.items():
        c = counts.get(name, {})
        device = device_label(info.device.model_dump())
        prompt_set = f"{info.prompt_set} {info.prompt_set_hash[:12]}".strip()
        rows.append(
            [
                name,
                *([info.run_id] if with_id else []),
                info.spec.model,
                format_label(info.spec.quantization, (info.bundle or {}).get("format")),
                device,
                f"{info.spec.engine} / {info.spec.target}",
                prompt_set,
                *(str(c.get(k, 0)) for k in ("ok", "failed", "skipped", "warmup")),
                info.created,
            ]
        )
    return Table("Runs", headers, rows)


def memory_table(data: RunData) -> Table | None:
    """Peak memory measured per run against the estimate the run was planned with."""
    rows = []
    for name, info in data.infos.items():
        estimate = getattr(info, "memory_estimate_bytes", None)
        if not estimate:
            continue
        runs = (
            data.df[(data.df["run"] == name) & (data.df["status"] == "ok")]
            if len(data.df)
            else data.df
        )
        peak = runs["peak_mem_bytes"].max() if "peak_mem_bytes" in runs and len(runs) else None
        measured_mib = f"{peak / 2**20:,.1f}" if peak == peak and peak else "n/a"
        ratio = f"{peak / estimate:.2f}" if peak == peak and peak else "n/a"
        rows.append([name, info.spec.model, f"{estimate / 2**20:,.1f}", measured_mib, ratio])
    if not rows:
        return None
    note = (
        "estimate = packed weights + KV cache for the longest prompt and output + runtime "
        "overhead; measured = the runner's peak RSS."
    )
    return Table(
        "Memory: estimate vs measured peak",
        ["run", "model", "estimate (MiB)", "measured peak (MiB)", "measured / estimate"],
        rows,
        note,
    )


def result_tables(summary: pd.DataFrame, compared: bool) -> list[Table]:
    """The pooled (model x L) table and the per-task table."""
    if summary.empty:
        return [
            Table(
                "Results", ["note"], [["no measured records (status ok, not warmup) in these runs"]]
            )
        ]
    metrics = [m for m in METRIC_HEADERS if f"{m}_median" in summary]
    note = (
        "Cells: value (ratio = this run / baseline). Ratio > 1 is "
        "faster for ITPS and OTPS, slower for TTFT and runtime."
        if compared
        else "Cells: median [p10-p90] over measured requests (warmups and failures excluded)."
    )
    if "ttft_estimated" in summary and summary["ttft_estimated"].fillna(False).astype(bool).any():
        note += (
            " ~TTFT: estimated as prefill + one decode step (the runner prints no first-token "
            "time)."
        )
    note += ENERGY_NOTE if MILLI & set(metrics) else ""
    # The noise column only when some cell is flagged: a clean report carries no empty column.
    noisy = any_flagged(summary)
    note += f" {rule_note()}" if noisy else ""
    pooled = _in_table_order(summary[summary["task"] == "all"])
    per_task = _in_table_order(summary[summary["task"] != "all"])
    # The setting column only where some record says where it ran: old reports look as they did.
    cpus = "cpus" in summary and bool((summary["cpus"].fillna("") != "").any())
    return [
        Table(
            "Overview: model x L (all tasks pooled)",
            _headers(metrics, False, cpus, noisy),
            [_row(r, metrics, compared, False, cpus, noisy) for _, r in pooled.iterrows()],
            note,
        ),
        Table(
            "Per task",
            _headers(metrics, True, cpus, noisy),
            [_row(r, metrics, compared, True, cpus, noisy) for _, r in per_task.iterrows()],
            note,
        ),
    ]


def _in_table_order(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows by build, then setting by thread count (2 before 10), then task in the paper's
    order (summ, qs, qa) rather than alphabetically, then L."""
    order = {task: i for i, task in enumerate(TASK_ORDER)}
    by_column = {
        "task": lambda col: col.map(order),
        "cpus": lambda col: col.fillna("").map(setting_order),
    }
    return rows.sort_values(
        [k for k in GROUP_KEYS if k in rows],
        key=lambda col: by_column.get(col.name, lambda c: c)(col),
        kind="stable",
    )


def _headers(
    metrics: list[str], with_task: bool, with_cpus: bool = False, with_noise: bool = False
) -> list[str]:
    keys = ["model", "quant", "weights", "device", "engine / target"] + (
        ["cpus"] if with_cpus else []
    )
    keys += (["task"] if with_task else []) + ["L", "n"]
    return keys + [METRIC_HEADERS[m] for m in metrics] + ([NOISE_COLUMN] if with_noise else [])


def _row(
    row,
    metrics: list[str],
    compared: bool,
    with_task: bool,
    with_cpus: bool = False,
    with_noise: bool = False,
) -> list[str]:
    engine = f"{row['engine']} / {row['target']}" if row["target"] else str(row["engine"])
    keys = [row["model"], row["quantization"], row["weights"], row["device"], engine]
    keys += [row["cpus"] or "not recorded"] if with_cpus else []
    keys += ([row["task"]] if with_task else []) + [int(row["L"]), int(row["n"])]
    cells = [str(k) for k in keys] + [_cell(row, m, compared) for m in metrics]
    return cells + ([noise_cell(row)] if with_noise else [])


def _cell(row, metric: str, compared: bool) -> str:
    value = row[f"{metric}_median"]
    text = format_value(value, metric)
    if metric == "ttft_s" and row.get("ttft_estimated") is True and not _missing(value):
        text = f"~{text}"  # estimated by a native runner: prefill + one decode step
    if compared:
        ratio = row.get(f"{metric}_ratio", math.nan)
        return f"{text} ({'n/a' if _missing(ratio) else f'{ratio:.2f}×'})"
    if metric in RANGED and not _missing(value):
        low = format_value(row[f"{metric}_p10"], metric)
        high = format_value(row[f"{metric}_p90"], metric)
        return f"{text} [{low}-{high}]"
    return text


def format_value(value, metric: str) -> str:
    """Three significant digits, no exponent; MiB for memory, mJ for energy; '-' when missing."""
    if _missing(value):
        return "-"
    value = float(value)
    if metric == "peak_mem_bytes":
        return f"{value / 2**20:,.1f}"
    if metric in MILLI:
        value *= 1000.0
    if metric == "input_tokens":
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def over_budget_notes(data: RunData) -> list[str]:
    """One line per run that was planned over its device's memory budget (harness.memory) and
    ran anyway: its timings may include the phone freeing memory for it."""
    notes = []
    for name, info in data.infos.items():
        if getattr(info, "over_budget", False) and not getattr(info, "skipped", None):
            estimate, budget, total = (
                info.memory_estimate_bytes,
                info.memory_budget_bytes,
                info.memory_total_bytes,
            )
            ram = f" of {total / 1e9:.1f} GB RAM" if total else ""
            notes.append(
                f"{name}: over budget: {info.spec.model} needs ~{(estimate or 0) / 1e9:.1f} "
                f"GB, budget {(budget or 0) / 1e9:.1f} GB{ram} (ran anyway)"
            )
    return notes


def list_problems(data: RunData, base: RunData | None) -> list[str]:
    """Unreadable lines, failed cells and mixed prompt sets: what a reader must know first."""
    problems = list(data.problems) + [f"baseline {p}" for p in (base.problems if base else [])]
    infos = [*data.infos.values(), *(base.infos.values() if base else [])]
    hashes = sorted({info.prompt_set_hash for info in infos if info.prompt_set_hash})
    if len(hashes) > 1:
        problems.append(
            f"the runs used {len(hashes)} different prompt sets "
            f"({', '.join(h[:12] for h in hashes)}); their numbers are not directly comparable"
        )
    if not data.df.empty:
        failed = data.df[data.df["status"] == "failed"]
        for _, row in failed.head(MAX_LISTED_FAILURES).iterrows():
            error = row.get("error") or "no error message"
            problems.append(
                f"{row['run']}: {row['prompt_id']} repeat {row['repeat']} failed: {error}"
            )
        if len(failed) > MAX_LISTED_FAILURES:
            problems.append(f"... and {len(failed) - MAX_LISTED_FAILURES} more failed measurements")
    return problems


def metric_definitions() -> str:
    """The schema module's docstring: the one place the metrics are defined."""
    return (schema.__doc__ or "").split("\n", 1)[-1].strip()


# -- Markdown ---------------------------------------------------------------------------


def render_markdown(
    title: str,
    baseline_note: str,
    problems: list[str],
    tables: list[Table],
    plots: list[Path],
    out: Path,
) -> str:
    lines = [f"# {title}", "", f"Generated {now_rfc3339()} by slm-bench {__version__}.", ""]
    if baseline_note:
        lines += [baseline_note, ""]
    lines += ["## Problems", ""]
    lines += [f"- {_md_escape(p)}" for p in problems] or ["None."]
    for table in tables:
        lines += ["", f"## {table.title}", ""]
        if table.note:
            lines += [table.note, ""]
        lines += _md_table(table)
    lines += ["", "## Plots", ""]
    for png in (p for p in plots if p.suffix == ".png"):
        rel = png.relative_to(out) if png.is_relative_to(out) else png
        lines += [f"![{png.stem}]({rel.as_posix()})", ""]
    lines += ["## Metric definitions", "", metric_definitions(), ""]
    return "\n".join(lines)


def _md_table(table: Table) -> list[str]:
    def line(cells) -> str:
        return "| " + " | ".join(_md_escape(c) for c in cells) + " |"

    return [
        line(table.headers),
        "|" + "|".join("---" for _ in table.headers) + "|",
        *(line(r) for r in table.rows),
    ]


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# -- HTML -------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
.note { color: #555; font-size: .9em; } .problems li { color: #a40000; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
/* A table wider than the page scrolls inside its box at its natural width. The scrollbar is
   styled so that Blink and WebKit always draw it: their overlay scrollbars (macOS, phones) stay
   hidden until scrolled, and the table then looks cut off at the right edge. */
.table-wrap { overflow-x: auto; max-width: 100%; }
.table-wrap::-webkit-scrollbar { height: 10px; }
.table-wrap::-webkit-scrollbar-thumb { background: #bbb; border-radius: 5px; }
.table-wrap::-webkit-scrollbar-track { background: #f0f0f0; border-radius: 5px; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; font-size: .85em; }
"""  # noqa: E501 (the CSS goes into every report byte for byte; rewrapping it would change them)


def render_html(
    title: str, baseline_note: str, problems: list[str], tables: list[Table], plots: list[Path]
) -> str:
    """One file with inline CSS and the PNG plots embedded as base64: mail it, open it offline."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">Generated {esc(now_rfc3339())} by slm-bench {esc(__version__)}.</p>',
    ]
    if baseline_note:
        parts.append(f"<p>{esc(baseline_note)}</p>")
    parts.append("<h2>Problems</h2>")
    if problems:
        parts.append(
            '<ul class="problems">' + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>"
        )
    else:
        parts.append("<p>None.</p>")
    for table in tables:
        parts.append(f"<h2>{esc(table.title)}</h2>")
        if table.note:
            parts.append(f'<p class="note">{esc(table.note)}</p>')
        parts.append(_html_table(table))
    parts.append("<h2>Plots</h2>")
    for png in (p for p in plots if p.suffix == ".png"):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        image = f'<img alt="{esc(png.stem)}" src="data:image/png;base64,{data}">'
        parts.append(f"<figure>{image}<figcaption>{esc(png.stem)}</figcaption></figure>")
    parts += [
        "<h2>Metric definitions</h2>",
        f"<pre>{esc(metric_definitions())}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _html_table(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
