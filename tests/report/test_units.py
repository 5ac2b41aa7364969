"""Unit-to-unit variation: a device model measured by two phones gets one row per phone and
the spread of their medians; the result tables keep one row per device model.

The pool cell is built from Records with known values (model m, q4, task summ), measured by two
Galaxy S24s (SM-S921B) of ``pool:galaxy-s24``:

    L    phone   OTPS             ITPS              temp before  other load
    200  R3CXA   20, 21, 22       400, 410, 420     30.0         2%
    200  R3CXB   17, 17.5, 18     320, 328, 336     36.0         5%
    400  R3CXA   15, 15, 15       500, 500, 500     30.0         2%

so at L=200 OTPS max/min = 21 / 17.5 = 1.20 and ITPS max/min = 410 / 328 = 1.25; L=400 was
measured by one phone (no spread).
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness.report import plots as plots_module
from harness.report.aggregate import load_runs, summarize_overall
from harness.report.render import write_report
from harness.report.units import TITLE, unit_rows
from harness.results.journal import Journal
from harness.results.schema import DeviceInfo, DeviceState, Record, RunInfo, RunSpec

A = DeviceInfo(serial="R3CXA", model="SM-S921B", profile="galaxy-s24")
B = DeviceInfo(serial="R3CXB", model="SM-S921B", profile="galaxy-s24")
PIXEL = DeviceInfo(serial="P8", model="Pixel 8")
PHONES = {phone.serial: phone for phone in (A, B, PIXEL)}
MEASURED = {  # (serial, L) -> (OTPS, ITPS) of its three requests
    ("R3CXA", 200): ([20.0, 21.0, 22.0], [400.0, 410.0, 420.0]),
    ("R3CXB", 200): ([17.0, 17.5, 18.0], [320.0, 328.0, 336.0]),
    ("R3CXA", 400): ([15.0, 15.0, 15.0], [500.0, 500.0, 500.0]),
}
CONDITIONS = {"R3CXA": (30.0, 0.02), "R3CXB": (36.0, 0.05), "P8": (None, None)}


def record(device: DeviceInfo, length: int, otps: float, itps: float, repeat: int, **changes):
    temp, load = CONDITIONS[device.serial]
    values = dict(
        model="m",
        params=1000,
        quantization="q4",
        engine="tvm",
        target="android",
        device=device,
        prompt_id=f"d01-summ-L{length}",
        task="summ",
        L=length,
        input_tokens=length,
        output_tokens=33,
        prefill_s=length / itps,
        ttft_s=length / itps + 0.05,
        runtime_s=2.0,
        itps=itps,
        otps=otps,
        repeat=repeat,
        device_state_before=DeviceState(cpu_temp_c=temp),
        cpu_load_other=load,
    )
    return Record(**{**values, **changes})


def write_run(folder, records: list[Record], device: str, info_device: DeviceInfo):
    journal = Journal(folder)
    spec = RunSpec(model="m", quantization="q4", device=device)
    journal.write_run_info(RunInfo(run_id=folder.name, spec=spec, device=info_device))
    for r in records:
        journal.append(r)
    return folder


def pool_records(measured=MEASURED) -> list[Record]:
    return [
        record(PHONES[serial], length, otps, itps, i)
        for (serial, length), (otps_values, itps_values) in measured.items()
        for i, (otps, itps) in enumerate(zip(otps_values, itps_values, strict=True))
    ]


@pytest.fixture
def pool_cell(tmp_path):
    """One cell of a pool grid, finished by two phones."""
    return write_run(tmp_path / "pool-cell", pool_records(), "pool:galaxy-s24", A)


@pytest.fixture
def no_plots(monkeypatch):
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])


def section(md: str, title: str) -> str:
    start = md.index(f"## {title}")
    return md[start : md.index("\n## ", start + 1)]


def test_the_result_tables_group_a_pools_phones_by_device_model(pool_cell):
    overall = summarize_overall(load_runs([pool_cell]).df)
    at_200 = overall[overall["L"] == 200]
    assert list(at_200["device"]) == ["SM-S921B"] and list(at_200["n"]) == [6]
    assert at_200["otps_median"].iloc[0] == pytest.approx(19.0)  # of all six requests


def test_each_phone_has_its_row_and_the_group_its_spread(pool_cell):
    rows = unit_rows(load_runs([pool_cell]).df)
    assert list(zip(rows["L"], rows["serial"], rows["n"], strict=True)) == [
        (200, "R3CXA", 3),
        (200, "R3CXB", 3),
        (400, "R3CXA", 3),
    ]
    assert list(rows["otps_median"]) == pytest.approx([21.0, 17.5, 15.0])
    assert list(rows["itps_median"]) == pytest.approx([410.0, 328.0, 500.0])
    assert list(rows["cpu_temp_c_before_median"]) == pytest.approx([30.0, 36.0, 30.0])
    assert list(rows["cpu_load_other_median"]) == pytest.approx([0.02, 0.05, 0.02])
    assert list(rows["phones"]) == [2, 2, 1]
    assert list(rows["otps_max_min"][:2]) == pytest.approx([1.2, 1.2])
    assert list(rows["itps_max_min"][:2]) == pytest.approx([1.25, 1.25])
    assert pd.isna(rows["otps_max_min"][2]) and pd.isna(rows["itps_max_min"][2])
    assert rows["same_prompts"].all()


def test_the_report_has_the_section_and_units_csv(pool_cell, tmp_path, no_plots):
    outputs = write_report([pool_cell], tmp_path / "report")
    md = outputs.markdown.read_text()
    units = section(md, TITLE)
    assert (
        "| SM-S921B | m | q4 | real | tvm / android | 200 | R3CXA | 3 | 21 | 410 | 30.0 | 2% "
        "| 1.20× | 1.25× |"
    ) in units
    assert (
        "| SM-S921B | m | q4 | real | tvm / android | 200 | R3CXB | 3 | 17.5 | 328 | 36.0 | 5% "
        "|  |  |"
    ) in units
    assert (
        "| SM-S921B | m | q4 | real | tvm / android | 400 | R3CXA | 3 | 15 | 500 | 30.0 | 2% "
        "| - | - |"
    ) in units
    assert "temperature and other processes' load may explain part of it" in units
    # the overview keeps one row for the device model
    overview = section(md, "Overview")
    assert overview.count("| SM-S921B |") == 2  # L=200 and L=400
    assert TITLE in outputs.html.read_text()
    assert outputs.units_csv == tmp_path / "report" / "units.csv"
    assert outputs.units_csv in outputs.files()
    csv = pd.read_csv(outputs.units_csv)
    assert list(csv["serial"]) == ["R3CXA", "R3CXB", "R3CXA"]
    assert csv["otps_max_min"][0] == pytest.approx(1.2)


def test_a_single_phone_report_has_no_section(pool_cell, tmp_path, no_plots):
    write_report([pool_cell], tmp_path / "report")  # leaves a units.csv in the folder
    one = pool_records({k: v for k, v in MEASURED.items() if k[0] == "R3CXA"})
    single = write_run(tmp_path / "single", one, "adb:R3CXA", A)
    outputs = write_report([single], tmp_path / "report")
    assert TITLE not in outputs.markdown.read_text()
    assert TITLE not in outputs.html.read_text()
    assert outputs.units_csv is None and not (tmp_path / "report" / "units.csv").exists()
    assert unit_rows(load_runs([single]).df).empty


def test_two_runs_on_two_phones_compare_and_other_devices_stay_out(tmp_path, no_plots):
    """A run per phone (not a pool): the same section; a device model measured by one phone
    (a Pixel 8 beside them) has no rows in it."""
    on_a = write_run(
        tmp_path / "on-a",
        pool_records({k: v for k, v in MEASURED.items() if k[0] == "R3CXA"}),
        "adb:R3CXA",
        A,
    )
    on_b = write_run(
        tmp_path / "on-b",
        pool_records({k: v for k, v in MEASURED.items() if k[0] == "R3CXB"}),
        "adb:R3CXB",
        B,
    )
    pixel = write_run(
        tmp_path / "pixel", [record(PIXEL, 200, 30.0, 600.0, i) for i in range(3)], "adb:P8", PIXEL
    )
    rows = unit_rows(load_runs([on_a, on_b, pixel]).df)
    assert set(rows["device"]) == {"SM-S921B"}
    assert list(rows["otps_max_min"][:2]) == pytest.approx([1.2, 1.2])
    md = write_report([on_a, on_b, pixel], tmp_path / "report").markdown.read_text()
    assert "Pixel 8" not in section(md, TITLE)


def test_phones_that_measured_different_prompts_are_said_to(tmp_path, no_plots):
    """A cell that moved to another phone part-way: each phone measured other requests."""
    records = [
        record(A, 200, 20.0, 400.0, 0, prompt_id="d01-summ-L200"),
        record(B, 200, 16.0, 400.0, 0, prompt_id="d02-summ-L200"),
    ]
    cell = write_run(tmp_path / "moved", records, "pool:galaxy-s24", A)
    rows = unit_rows(load_runs([cell]).df)
    assert not rows["same_prompts"].any()
    units = section(write_report([cell], tmp_path / "report").markdown.read_text(), TITLE)
    assert "| 1.25× (different prompts) | 1.00× (different prompts) |" in units
