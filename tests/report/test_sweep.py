"""Thread and core sweeps: the `cpus` label, the "Threads and cores" table and the thread_sweep
plot.

The sweep run is built from Records with known ITPS/OTPS, two settings on a two-core big cluster:

    setting                      L    ITPS        median   OTPS      median
    1 thread · big (0-1)         200  100,110,120  110 *   20,21,22   21 ★
    2 threads · big (0-1), dflt  200  200,210,220  210 ★   15,16,17   16    -> OTPS 16/21-1 = -24%
    1 thread · big (0-1)         400  150,160,170  160 ★   10,11,12   11
    2 threads · big (0-1), dflt  400  120,130,140  130     30,31,32   31 ★  -> ITPS 130/160-1 = -19%
"""

from __future__ import annotations

import pytest

from harness.report.aggregate import load_runs, placement_label, summarize_overall
from harness.report.render import write_report
from harness.report.sweep import default_distance, one_setting_per_build, sweep_summary, sweep_table
from harness.results.journal import Journal
from harness.results.schema import DeviceInfo, Record, RunInfo, RunSpec

BIG = dict(cpu_mask="3", cpu_list="0-1", cpu_clusters=["big"], cpu_mask_asked="3")
ONE = dict(BIG, threads=1, threads_asked=1, os_threads=2)
# one thread per core
TWO = dict(BIG, threads=2, threads_asked=None, os_threads=3, placement_default=True)
# (placement, L) -> (ITPS of each repeat, OTPS of each repeat)
VALUES = {
    ("one", 200): ([100.0, 110.0, 120.0], [20.0, 21.0, 22.0]),
    ("two", 200): ([200.0, 210.0, 220.0], [15.0, 16.0, 17.0]),
    ("one", 400): ([150.0, 160.0, 170.0], [10.0, 11.0, 12.0]),
    ("two", 400): ([120.0, 130.0, 140.0], [30.0, 31.0, 32.0]),
}
LABEL_ONE, LABEL_TWO = "1 thread · big (0-1)", "2 threads · big (0-1)"


def record(
    length: int, itps: float, otps: float, repeat: int, placement: dict | None = None, **changes
) -> Record:
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
        prefill_s=length / itps,
        ttft_s=0.2,
        runtime_s=1.0,
        itps=itps,
        otps=otps,
        repeat=repeat,
    )
    return Record(**values, **(placement or {}), **changes)


def write_run(folder, records: list[Record]):
    journal = Journal(folder)
    journal.write_run_info(
        RunInfo(run_id=folder.name, spec=RunSpec(model="m", quantization="q4", lengths=[200, 400]))
    )
    for r in records:
        journal.append(r)
    return folder


@pytest.fixture
def sweep_run(tmp_path):
    records = []
    for (name, length), (itps, otps) in VALUES.items():
        placement = ONE if name == "one" else TWO
        records += [
            record(length, i, o, repeat, placement)
            for repeat, (i, o) in enumerate(zip(itps, otps, strict=True))
        ]
        # never enters a median
        records.append(record(length, 9999.0, 9999.0, 0, placement, warmup=True))
    return write_run(tmp_path / "sweep", records)


@pytest.fixture
def old_run(tmp_path):
    """A run recorded before placement existed: no thread or core field at all."""
    records = [
        record(length, i, o, repeat)
        for (name, length), (itps, otps) in VALUES.items()
        if name == "one"
        for repeat, (i, o) in enumerate(zip(itps, otps, strict=True))
    ]
    return write_run(tmp_path / "old", records)


def test_label_names_threads_cluster_and_cores():
    assert placement_label(record(200, 1.0, 1.0, 0, ONE)) == LABEL_ONE
    assert placement_label(record(200, 1.0, 1.0, 0, TWO)) == LABEL_TWO
    asked_only = dict(
        threads_asked=8, cores_asked="little", cpu_mask_asked="f", oversubscribed=True
    )
    assert (
        placement_label(record(200, 1.0, 1.0, 0, asked_only))
        == "8 threads · little (0-3) · oversubscribed"
    )
    assert placement_label(record(200, 1.0, 1.0, 0)) == ""


def test_settings_never_pool_into_one_median(sweep_run):
    overall = summarize_overall(load_runs([sweep_run]).df)
    medians = {
        (r["cpus"], r["L"]): (r["itps_median"], r["otps_median"]) for _, r in overall.iterrows()
    }
    # Four cells, none pooling two settings: the medians of the table above.
    assert medians == {
        (LABEL_ONE, 200): (110.0, 21.0),
        (LABEL_TWO, 200): (210.0, 16.0),
        (LABEL_ONE, 400): (160.0, 11.0),
        (LABEL_TWO, 400): (130.0, 31.0),
    }


def test_fastest_setting_per_length_and_default_distance(sweep_run):
    sweep = sweep_summary(load_runs([sweep_run]).df)
    fastest = {
        (r["L"], m): r["cpus"]
        for _, r in sweep.iterrows()
        for m in ("itps", "otps")
        if r[f"fastest_{m}"]
    }
    assert fastest == {
        (200, "itps"): LABEL_TWO,
        (200, "otps"): LABEL_ONE,
        (400, "itps"): LABEL_ONE,
        (400, "otps"): LABEL_TWO,
    }
    key = ("m", "q4", "real", "Pixel 8", "tvm", "android")
    assert default_distance(sweep, "otps")[(*key, 200)] == pytest.approx(16 / 21 - 1)
    assert default_distance(sweep, "itps")[(*key, 400)] == pytest.approx(130 / 160 - 1)
    assert default_distance(sweep, "itps")[(*key, 200)] == 0.0


def test_table_stars_the_fastest_and_states_the_rule(sweep_run):
    table = sweep_table(load_runs([sweep_run]).df)
    assert table.title == "Threads and cores"
    assert (
        "★: fastest setting at this L; default: the device's default core set, one thread per core"
        in table.note
    )
    rows = {(row[2], row[4]): row for row in table.rows}
    default = f"{LABEL_TWO} (default)"
    # by L
    assert list(rows) == [
        (LABEL_ONE, "200"),
        (default, "200"),
        (LABEL_ONE, "400"),
        (default, "400"),
    ]
    headers = ("ITPS median (tok/s)", "OTPS median (tok/s)", "default vs fastest")
    itps, otps, distance = (table.headers.index(h) for h in headers)
    one_200, two_200 = rows[(LABEL_ONE, "200")], rows[(default, "200")]
    assert (one_200[itps], one_200[otps], two_200[itps], two_200[otps]) == (
        "110",
        "21 ★",
        "210 ★",
        "16",
    )
    assert two_200[distance] == "ITPS 0% · OTPS -24%" and one_200[distance] == ""
    assert rows[(default, "400")][distance] == "ITPS -19% · OTPS 0%"
    # cpu_mask read back; n = 3 repeats (the warmup left out)
    assert one_200[3] == "3" and one_200[5] == "3"
    assert "read back" not in table.headers  # nothing differs from what was asked


def test_mismatch_is_flagged(sweep_run, tmp_path):
    mismatch = "asked cores 0-1, the runner was allowed 0-3"
    odd = record(
        200,
        50.0,
        5.0,
        7,
        {**ONE, "cpu_mask": "f", "cpu_list": "0-3", "placement_mismatch": mismatch},
    )
    records, _ = Journal(sweep_run).load()
    table = sweep_table(load_runs([write_run(tmp_path / "odd", [*records, odd])]).df)
    (flagged,) = [row for row in table.rows if "⚠" in row[2]]
    assert (
        flagged[2] == "1 thread · big (0-3) ⚠"
        and flagged[3] == "f"
        and flagged[-1] == f"⚠ {mismatch}"
    )
    assert "⚠: what the runner ran" in table.note


def test_report_includes_the_table_and_the_plot(sweep_run, tmp_path):
    outputs = write_report([sweep_run], tmp_path / "report")
    md = outputs.markdown.read_text()
    assert "## Threads and cores" in md and "| 210 ★ |" in md and "ITPS -19% · OTPS 0%" in md
    overview = md[md.index("## Overview") : md.index("## Per task")]
    assert "| cpus |" in overview and f"| {LABEL_TWO} |" in overview
    plot = outputs.out_dir / "plots" / "thread_sweep.svg"
    assert plot.is_file() and (outputs.out_dir / "plots" / "thread_sweep.png") in outputs.plots
    svg = plot.read_text()
    assert "L=200" in svg and "L=400" in svg and "fastest at this L" in svg and "(default)" in svg
    assert "Threads and cores" in outputs.html.read_text()
    # the legend names the setting
    assert LABEL_ONE in (outputs.out_dir / "plots" / "otps_vs_L.svg").read_text()


def test_run_without_placement_renders_as_before(old_run, tmp_path):
    outputs = write_report([old_run], tmp_path / "report")
    md = outputs.markdown.read_text()
    assert "Threads and cores" not in md and "| cpus |" not in md and "thread" not in md
    assert not (outputs.out_dir / "plots" / "thread_sweep.png").exists()
    assert all(p.stem != "thread_sweep" for p in outputs.plots)
    assert set(summarize_overall(load_runs([old_run]).df)["cpus"]) == {""}
    assert "thread" not in (outputs.out_dir / "plots" / "otps_vs_L.svg").read_text()


def test_baseline_matches_the_same_setting(sweep_run, old_run, tmp_path, monkeypatch):
    from harness.report import plots as plots_module

    # plots are tested above
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    against_itself = write_report([sweep_run], tmp_path / "self", baseline=sweep_run).summary
    assert (against_itself["otps_ratio"] == 1.0).all()  # each setting against its own, not the pool
    # A baseline that recorded no placement is one pooled reference for every setting.
    against_old = write_report([sweep_run], tmp_path / "old", baseline=old_run).summary.set_index(
        ["cpus", "task", "L"]
    )
    assert against_old.loc[(LABEL_TWO, "summ", 400), "otps_ratio"] == pytest.approx(31 / 11)


def test_one_setting_run_is_no_sweep(old_run, tmp_path):
    records = [record(r.L, r.itps, r.otps, r.repeat, TWO) for r in Journal(old_run).load()[0]]
    data = load_runs([write_run(tmp_path / "single", records)])
    assert sweep_table(data.df) is None
    overall = summarize_overall(data.df)
    assert set(overall["cpus"]) == {LABEL_TWO}


def test_rankings_take_the_default_setting(sweep_run):
    data = load_runs([sweep_run])
    ranked = one_setting_per_build(summarize_overall(data.df), data.df)
    assert set(ranked["cpus"]) == {LABEL_TWO} and sorted(ranked["L"]) == [200, 400]


def test_a_setting_measured_under_load_is_marked_in_the_sweep_table(tmp_path):
    """The star follows the medians; a setting whose requests shared the CPU says so beside it."""
    from harness.report.sweep import sweep_table
    from harness.results.journal import Journal
    from harness.results.schema import Record, RunInfo, RunSpec

    run = tmp_path / "run"
    journal = Journal(run)
    journal.write_run_info(RunInfo(run_id="r", spec=RunSpec(model="m", quantization="q4")))
    base = dict(
        model="m",
        quantization="q4",
        engine="tvm",
        prompt_id="p",
        task="summ",
        L=200,
        input_tokens=100,
        output_tokens=9,
        prefill_s=0.1,
        ttft_s=0.11,
        runtime_s=0.2,
        cpu_list="0-1",
        cpu_clusters=["big"],
        cpu_mask="3",
        cpu_mask_asked="3",
    )
    for threads, load in ((1, 0.4), (2, 0.0)):
        for repeat in range(3):
            journal.append(
                Record(
                    **base,
                    repeat=repeat,
                    itps=100.0 * threads,
                    otps=10.0 * threads,
                    threads=threads,
                    threads_asked=threads,
                    cpu_load_other=load,
                    placement_default=threads == 2,
                )
            )
    from harness.report.aggregate import load_runs

    table = sweep_table(load_runs([run]).df)
    noise_column = table.headers.index("noise")
    assert [row[noise_column] for row in table.rows] == ["⚠ under load", ""]
    assert "under load = other processes used more than 10%" in table.note
