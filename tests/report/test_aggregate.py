"""Aggregation: one row per record, stats over measured records only."""

import math

import pytest

from harness.errors import UserError
from harness.report.aggregate import (
    load_runs,
    measured,
    summarize,
    summarize_overall,
    summary_table,
)
from harness.results.journal import Journal
from harness.results.schema import DeviceInfo, Record, RunInfo, RunSpec


def make_record(task: str, length: int, otps: float, **changes) -> Record:
    values = dict(
        model="m",
        params=1000,
        quantization="q4",
        engine="tvm",
        target="android",
        prompt_id=f"d01-{task}-L{length}",
        task=task,
        L=length,
        input_tokens=length + 10,
        output_tokens=33,
        prefill_s=0.1,
        ttft_s=0.2,
        runtime_s=1.0,
        itps=100.0,
        otps=otps,
        device=DeviceInfo(serial="abc", model="Pixel 8"),
    )
    values.update(changes)
    return Record(**values)


@pytest.fixture
def known_run(tmp_path):
    journal = Journal(tmp_path / "known")
    journal.write_run_info(RunInfo(run_id="r", spec=RunSpec(model="m", quantization="q4")))
    for i, otps in enumerate([10.0, 20.0, 30.0, 40.0, 50.0]):
        journal.append(make_record("summ", 200, otps, repeat=i))
    journal.append(make_record("summ", 200, 1000.0, warmup=True))
    journal.append(make_record("summ", 200, 1000.0, repeat=9, status="failed", error="boom"))
    journal.append(make_record("qa", 200, 60.0))
    return tmp_path / "known"


def test_one_row_per_record_with_device_columns(measured_run_dir):
    data = load_runs([measured_run_dir])
    records, _ = Journal(measured_run_dir).load()
    assert len(data.df) == len(records)
    assert {"device.serial", "device.model", "device", "run"} <= set(data.df.columns)
    assert not measured(data.df)["warmup"].any()
    assert set(measured(data.df)["status"]) == {"ok"}


def test_stats_use_measured_records_only(known_run):
    summary = summarize(load_runs([known_run]).df)
    row = summary[summary["task"] == "summ"].iloc[0]
    assert row["device"] == "Pixel 8"
    assert row["n"] == 5
    assert row["otps_median"] == 30.0
    assert row["otps_p10"] == pytest.approx(14.0)  # linear interpolation
    assert row["otps_p90"] == pytest.approx(46.0)
    assert row["otps_stdev"] == pytest.approx(math.sqrt(250.0))
    assert row["otps_cv"] == pytest.approx(math.sqrt(250.0) / 30.0)
    assert row["otps_count"] == 5
    assert "peak_mem_bytes_median" not in summary  # a metric nobody measured is left out


def test_overall_pools_tasks(known_run):
    overall = summarize_overall(load_runs([known_run]).df)
    assert len(overall) == 1
    assert overall.iloc[0]["n"] == 6
    assert overall.iloc[0]["otps_median"] == 35.0
    table = summary_table(load_runs([known_run]).df)
    assert set(table["task"]) == {"summ", "qa", "all"}


def test_missing_run_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        UserError, match=r"neither a run \(run.json, records.jsonl\) nor run folders"
    ):
        load_runs([tmp_path / "empty"])
