"""A run's kernel profile (``slm-bench profile --out RUN_DIR``) in the run's report."""

from __future__ import annotations

import shutil

import pytest

from harness.profiling.render import check_line, write_outputs
from harness.report.profile import PROFILE_FILE
from harness.report.render import write_report


@pytest.fixture(scope="module")
def tiny_profile():
    from harness.profiling.collect import profile_local

    return profile_local(
        "dummy:tiny-llama", "q4f16_1", [200], 2, rounds=1, log=lambda *_: None, with_memory=False
    )


def test_a_profiled_run_reports_where_its_time_goes(measured_run_dir, tiny_profile, tmp_path):
    run = tmp_path / measured_run_dir.name
    shutil.copytree(measured_run_dir, run)
    write_outputs(tiny_profile, run)

    outputs = write_report([run], tmp_path / "report")
    markdown = outputs.markdown.read_text()
    for phase in tiny_profile.phases:
        title = f"## Where the time goes: {tiny_profile.model} q4f16_1, L=200 {phase.phase}"
        assert f"{title} ({run.name})" in markdown
        assert check_line(phase) in markdown  # the profile's own check, word for word
    assert "| VM + host overhead |" in markdown and "| kernel " in markdown
    chart = outputs.out_dir / "plots" / f"profile-{run.name}.png"
    assert chart in outputs.plots and chart.stat().st_size > 0
    assert f"(plots/profile-{run.name}.png)" in markdown
    assert "Where the time goes" in outputs.html.read_text()


def test_a_damaged_profile_is_a_problem_not_a_failed_report(measured_run_dir, tmp_path):
    run = tmp_path / measured_run_dir.name
    shutil.copytree(measured_run_dir, run)
    (run / PROFILE_FILE).write_text('{"model": "x"')

    markdown = write_report([run], tmp_path / "report").markdown.read_text()
    assert "Where the time goes" not in markdown
    assert f"{run / PROFILE_FILE}: not a profile this slm-bench can read" in markdown
    assert f"slm-bench profile --out {run}" in markdown


def test_a_run_without_a_profile_reports_as_before(measured_run_dir, tmp_path):
    outputs = write_report([measured_run_dir], tmp_path / "report")
    assert "Where the time goes" not in outputs.markdown.read_text()
    assert not any(p.name.startswith("profile-") for p in outputs.plots)
