"""Noise flags: cells measured under load or with a wide spread are marked and listed in Problems.

The run is built from Records with known values, one setting, task summ:

    L    OTPS of the five repeats      cpu_load_other   flagged
    200  20, 20.5, 21, 21.5, 22        0.02 each        no (p90/p10 = 21.8/20.2 = 1.08)
    400  30, 30.5, 31, 31.5, 32        0.30 each        under load (median 30% > 10%)
    800  17.8, 17.8, 98, 105, 105      not measured     wide spread (p10 17.8, p90 105: 5.9x > 1.25)

(the user's case: another job came and went on a 2-core desktop while the run measured).
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness.report import plots as plots_module
from harness.report.noise import UNDER_LOAD, WIDE_SPREAD, noise_problems, with_noise
from harness.report.render import write_report
from harness.results.journal import Journal
from harness.results.schema import DeviceInfo, Record, RunInfo, RunSpec

OTPS = {
    200: [20.0, 20.5, 21.0, 21.5, 22.0],
    400: [30.0, 30.5, 31.0, 31.5, 32.0],
    800: [17.8, 17.8, 98.0, 105.0, 105.0],
}
LOAD = {200: 0.02, 400: 0.3, 800: None}


def record(length: int, otps: float, repeat: int, **changes) -> Record:
    values = dict(
        model="m",
        params=1000,
        quantization="q4",
        engine="tvm",
        target="android",
        device=DeviceInfo(serial="s", model="Pixel 8"),
        prompt_id=f"d01-summ-L{length}",
        task="summ",
        L=length,
        input_tokens=length,
        output_tokens=33,
        prefill_s=1.0,
        ttft_s=1.1,
        runtime_s=2.0,
        itps=float(length),
        otps=otps,
        repeat=repeat,
    )
    return Record(**{**values, **changes})


def write_run(folder, records: list[Record], **info) -> object:
    journal = Journal(folder)
    journal.write_run_info(
        RunInfo(run_id=folder.name, spec=RunSpec(model="m", quantization="q4"), **info)
    )
    for r in records:
        journal.append(r)
    return folder


def report(tmp_path, monkeypatch, runs):
    # plots: test_plots
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    return write_report(runs, tmp_path / "report")


def section(md: str, title: str, end: str) -> str:
    return md[md.index(f"## {title}") : md.index(f"## {end}")]


@pytest.fixture
def noisy_run(tmp_path):
    records = [
        record(length, otps, i, cpu_load_other=LOAD[length])
        for length, values in OTPS.items()
        for i, otps in enumerate(values)
    ]
    return write_run(tmp_path / "noisy", records)


def test_cells_under_load_and_wide_are_flagged_with_problems(noisy_run, tmp_path, monkeypatch):
    outputs = report(tmp_path, monkeypatch, [noisy_run])
    per_task = outputs.summary[outputs.summary["task"] == "summ"].set_index("L")
    assert per_task["noise"].to_dict() == {200: "", 400: UNDER_LOAD, 800: WIDE_SPREAD}
    md = outputs.markdown.read_text()
    problems = section(md, "Problems", "Runs")
    assert (
        "m (q4) on Pixel 8 L=400 summ: measured under load (other "
        "processes used 30% of the CPU, median) — rerun with --max-load 0.1"
    ) in problems
    assert "m (q4) on Pixel 8 L=800 summ: wide spread (OTPS p10-p90 17.8-105, 5.9×)" in problems
    assert "L=200" not in problems  # the quiet, tight cell
    overview = section(md, "Overview", "Per task")
    assert "| noise |" in overview and "p90/p10 of ITPS or OTPS above 1.25" in overview
    assert "more than 10% of the CPU" in overview
    rows = [line for line in overview.splitlines() if line.startswith("| m |")]
    # by L
    assert [row.rsplit("|", 2)[-2].strip() for row in rows] == [
        "",
        "⚠ under load",
        "⚠ wide spread",
    ]
    per_task_md = section(md, "Per task", "Plots")
    assert "| ⚠ under load |" in per_task_md and "| ⚠ wide spread |" in per_task_md
    assert "⚠ wide spread" in outputs.html.read_text()


def test_summary_csv_carries_the_median_load(noisy_run, tmp_path, monkeypatch):
    csv = pd.read_csv(report(tmp_path, monkeypatch, [noisy_run]).csv)
    at = csv[csv["task"] == "summ"].set_index("L")["cpu_load_other_median"]
    assert at[200] == pytest.approx(0.02) and at[400] == pytest.approx(0.3) and pd.isna(at[800])
    assert "noise" in csv


def test_a_quiet_report_has_no_marker_column(tmp_path, monkeypatch):
    quiet = [record(200, otps, i, cpu_load_other=0.02) for i, otps in enumerate(OTPS[200])]
    md = report(tmp_path, monkeypatch, [write_run(tmp_path / "quiet", quiet)]).markdown.read_text()
    tables = section(md, "Overview", "Plots")
    assert "noise" not in tables and "⚠" not in tables
    assert section(md, "Problems", "Runs").strip().endswith("None.")


def test_a_pooled_row_takes_its_tasks_flags():
    # Two tasks at one L, each tight; qa measured under load: the pooled row is flagged through it.
    keys = dict(
        model="m",
        quantization="q4",
        weights="real",
        device="d",
        engine="tvm",
        target="",
        cpus="",
        L=200,
    )
    cells = [
        dict(keys, task="summ", cpu_load_other_median=0.01),
        dict(keys, task="qa", cpu_load_other_median=0.5),
        dict(keys, task="all", cpu_load_other_median=0.2),
    ]
    flagged = with_noise(pd.DataFrame(cells))
    assert list(flagged["noise"]) == ["", UNDER_LOAD, UNDER_LOAD]
    # the task cell; the pooled row adds no line of its own
    assert len(noise_problems(flagged)) == 1


@pytest.mark.parametrize(
    ("count", "p10", "p90", "share", "flagged"),
    [
        (2, 10.0, 100.0, None, ""),  # two values are no spread to judge
        (3, 10.0, 12.5, None, ""),  # exactly 1.25: at the limit, not above it
        (3, 10.0, 12.6, None, WIDE_SPREAD),
        (5, 10.0, 11.0, 0.10, ""),  # exactly a tenth of the CPU: not above the limit
        (5, 10.0, 11.0, 0.11, UNDER_LOAD),
    ],
)
def test_the_rule_at_its_limits(count, p10, p90, share, flagged):
    cell = dict(
        model="m",
        quantization="q4",
        weights="real",
        device="d",
        engine="tvm",
        target="",
        cpus="",
        task="summ",
        L=200,
        otps_count=count,
        otps_p10=p10,
        otps_p90=p90,
        cpu_load_other_median=share,
    )
    assert with_noise(pd.DataFrame([cell]))["noise"].iloc[0] == flagged


def test_many_flagged_cells_end_in_a_count(tmp_path, monkeypatch):
    loaded = [
        record(length, 30.0, i, cpu_load_other=0.5, task=task, prompt_id=f"d01-{task}-L{length}")
        for task in ("summ", "qs", "qa")
        for length in (200, 400, 600, 800)
        for i in range(3)
    ]
    md = report(
        tmp_path, monkeypatch, [write_run(tmp_path / "loaded", loaded)]
    ).markdown.read_text()
    problems = [
        line for line in section(md, "Problems", "Runs").splitlines() if line.startswith("- ")
    ]
    assert len(problems) == 11  # ten cells named, then the rest counted
    assert (
        problems[-1]
        == "- ... and 2 more flagged cells (12 under load in all); the Per task table marks each"
    )


def test_settings_sort_by_thread_count(tmp_path, monkeypatch):
    two = dict(threads=2, cpu_list="0-1", cpu_clusters=["big"])
    ten = dict(threads=10, cpu_list="0-9", cpu_clusters=["big"])
    records = [record(200, 20.0 + i, i, **where) for where in (ten, two) for i in range(3)]
    md = report(
        tmp_path, monkeypatch, [write_run(tmp_path / "threads", records)]
    ).markdown.read_text()
    for title, end in (("Overview", "Per task"), ("Per task", "Plots")):
        table = section(md, title, end)
        assert table.index("| 2 threads · big (0-1) |") < table.index("| 10 threads · big (0-9) |")


def test_legend_names_the_setting_only_when_several(tmp_path):
    from harness.report.aggregate import load_runs, summarize_overall
    from harness.report.plots import build_series

    one = dict(threads=2, cpu_list="0-1", cpu_clusters=["big"])
    other = dict(threads=1, cpu_list="0-1", cpu_clusters=["big"])
    single = write_run(tmp_path / "single", [record(200, 20.0, i, **one) for i in range(3)])
    labels = [s.label for s in build_series(summarize_overall(load_runs([single]).df))]
    assert labels == ["m (q4)"]
    swept = write_run(
        tmp_path / "swept", [record(200, 20.0, i, **w) for w in (one, other) for i in range(3)]
    )
    labels = [s.label for s in build_series(summarize_overall(load_runs([swept]).df))]
    assert labels == ["m (q4) · 1 thread · big (0-1)", "m (q4) · 2 threads · big (0-1)"]
