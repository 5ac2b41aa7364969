"""``slm-bench compare`` of sweep runs: cells match setting by setting where both runs have them.

Two settings, L=200, task summ, OTPS of three repeats:

    run        1 thread · big (0-1)   2 threads · big (0-1)
    before     10, 10, 10             20, 20, 20
    after      10, 10, 10             10, 10, 10      -> 2 threads halved, 1 thread unchanged
    old        15, 15, 15 (no placement recorded: one pooled cell)
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.report.compare import compare_runs, render_text
from tests.report.test_noise import record, write_run

ONE = dict(threads=1, threads_asked=1, cpu_list="0-1", cpu_clusters=["big"])
TWO = dict(threads=2, cpu_list="0-1", cpu_clusters=["big"], placement_default=True)
LABEL_ONE, LABEL_TWO = "1 thread · big (0-1)", "2 threads · big (0-1)"


def sweep(folder, otps_one: float, otps_two: float, settings=(ONE, TWO)):
    otps = {id(ONE): otps_one, id(TWO): otps_two}
    return write_run(
        folder, [record(200, otps[id(where)], i, **where) for where in settings for i in range(3)]
    )


def test_two_sweeps_compare_setting_by_setting(tmp_path):
    before, after = sweep(tmp_path / "before", 10.0, 20.0), sweep(tmp_path / "after", 10.0, 10.0)
    comparison = compare_runs([before], [after])
    ratios = comparison.cells.set_index("cpus")["otps_ratio"].to_dict()
    assert ratios == {LABEL_ONE: 1.0, LABEL_TWO: 0.5}  # pooled, both would read 15 -> 10
    text = render_text(comparison, 10.0)
    assert text.splitlines()[0].split()[:4] == ["model", "quant", "engine", "cpus"]
    assert LABEL_ONE in text and "(+100.0%) !" in text
    result = CliRunner().invoke(cli, ["compare", str(before), str(after), "--fail-above", "10"])
    assert result.exit_code == 1 and "REGRESSION: 1 of 2 cells" in result.output


def test_a_setting_one_sweep_lacks_is_listed_not_pooled(tmp_path):
    before = sweep(tmp_path / "before", 10.0, 20.0)
    after = sweep(tmp_path / "after", 10.0, 99.0, settings=(ONE,))
    comparison = compare_runs([before], [after])
    assert list(comparison.cells["cpus"]) == [LABEL_ONE] and list(
        comparison.cells["otps_ratio"]
    ) == [1.0]
    assert comparison.only_a == [("m", "q4", "tvm", "android", "summ", 200, LABEL_TWO)]


def test_a_sweep_against_an_old_run_pools(tmp_path):
    old = write_run(tmp_path / "old", [record(200, 15.0, i) for i in range(3)])
    new = sweep(tmp_path / "new", 10.0, 20.0)
    comparison = compare_runs([old], [new])
    assert "cpus" not in comparison.cells  # nothing matched by setting: the output looks as before
    # median of 10,10,10,20,20,20
    assert comparison.cells["otps_ratio"].tolist() == [pytest.approx(15.0 / 15.0)]
    assert "cpus" not in render_text(comparison, None).splitlines()[0]
    result = CliRunner().invoke(cli, ["compare", str(old), str(new), "--fail-above", "10"])
    assert result.exit_code == 0, result.output


def test_settings_on_different_cores_pool_rather_than_share_nothing(tmp_path):
    # Two phones: the same thread count on different core lists is no common setting.
    before = sweep(tmp_path / "before", 10.0, 20.0, settings=(ONE,))
    elsewhere = dict(ONE, cpu_list="4-7")
    after = write_run(tmp_path / "after", [record(200, 5.0, i, **elsewhere) for i in range(3)])
    comparison = compare_runs([before], [after])
    assert "cpus" not in comparison.cells and comparison.cells["otps_ratio"].tolist() == [0.5]


def test_a_run_without_measured_records_is_refused(tmp_path):
    from harness.errors import UserError

    before = sweep(tmp_path / "before", 10.0, 20.0)
    failed = write_run(
        tmp_path / "failed", [record(200, 10.0, 0, status="failed", error="boom", **ONE)]
    )
    with pytest.raises(UserError, match="has no measured records"):
        compare_runs([before], [failed])
