"""``slm-bench compare`` on constructed runs: what it computes from records with known numbers.

Two tasks at L=200, three repeats each. The "regressed" run decodes at a third of the baseline's
OTPS (a step run three times) with prefill untouched. Whether a real regression of that kind shows
through the noise of a real machine is a measurement, not a unit test:
benchmarks/compare_regression.py.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.report.compare import compare_runs, slowdown_pct
from tests.report.test_noise import record, write_run


def run(folder, otps: float, tasks=("summ", "qa"), model: str = "m"):
    return write_run(
        folder,
        [
            record(200, otps, i, task=task, prompt_id=f"d01-{task}-L200", model=model)
            for task in tasks
            for i in range(3)
        ],
    )


@pytest.fixture
def baseline_and_regressed(tmp_path):
    return run(tmp_path / "baseline", 30.0), run(tmp_path / "regressed", 10.0)


def test_slowdown_reads_the_same_for_throughput_and_time():
    assert slowdown_pct(100.0, 50.0, higher_is_better=True) == pytest.approx(100.0)  # OTPS halved
    assert slowdown_pct(1.0, 2.0, higher_is_better=False) == pytest.approx(100.0)  # TTFT doubled
    assert slowdown_pct(100.0, 200.0, higher_is_better=True) == pytest.approx(-50.0)  # faster
    assert math.isnan(slowdown_pct(0.0, 1.0, higher_is_better=True))


def test_a_run_compared_with_itself_passes_even_at_zero_percent(baseline_and_regressed):
    baseline, _ = baseline_and_regressed
    result = CliRunner().invoke(cli, ["compare", str(baseline), str(baseline), "--fail-above", "0"])
    assert result.exit_code == 0, result.output
    assert "+0.0%" in result.output and "REGRESSION" not in result.output


def test_a_3x_decode_regression_is_flagged(baseline_and_regressed):
    baseline, regressed = baseline_and_regressed
    comparison = compare_runs([baseline], [regressed])
    assert len(comparison.cells) == 2  # summ and qa at L=200
    # 30 -> 10 tok/s
    assert comparison.cells["otps_slowdown_pct"].tolist() == [pytest.approx(200.0)] * 2
    assert comparison.cells["otps_ratio"].tolist() == [pytest.approx(1 / 3)] * 2
    assert comparison.cells["itps_ratio"].tolist() == [pytest.approx(1.0)] * 2  # prefill untouched
    result = CliRunner().invoke(
        cli, ["compare", str(baseline), str(regressed), "--fail-above", "25"]
    )
    assert result.exit_code == 1, result.output
    assert "REGRESSION" in result.output and "otps" in result.output


def test_json_output_carries_ratios_per_cell(baseline_and_regressed):
    baseline, regressed = baseline_and_regressed
    result = CliRunner().invoke(cli, ["compare", str(baseline), str(regressed), "--json"])
    assert result.exit_code == 0
    cells = json.loads(result.stdout)
    assert {c["task"] for c in cells} == {"summ", "qa"}
    assert all(c["otps_ratio"] == pytest.approx(1 / 3) for c in cells)


def test_runs_with_no_common_cell_are_refused(baseline_and_regressed, tmp_path):
    baseline, _ = baseline_and_regressed
    other = run(tmp_path / "other", 30.0, tasks=("summ",), model="another")
    result = CliRunner().invoke(cli, ["compare", str(baseline), str(other)])
    assert result.exit_code != 0
    assert "share no cell" in str(result.exception or result.output)
