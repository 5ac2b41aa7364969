"""``slm-bench report`` and ``slm-bench plot`` through click's CliRunner."""

import json

from click.testing import CliRunner

from harness.cli import cli
from harness.report import plots as plots_module


def test_report_writes_files_and_prints_json(measured_run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])  # rendered in tests/report
    result = CliRunner().invoke(cli, ["report", str(measured_run_dir), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # stdout is only the JSON; "wrote ..." lines go to stderr
    assert {row["task"] for row in rows} >= {"summ", "qs", "qa", "all"}
    assert "otps_median" in rows[0]
    for name in ("report.md", "report.html", "summary.csv"):
        assert (tmp_path / name).is_file()
        assert f"wrote {tmp_path / name}" in result.stderr


def test_plot_writes_png_and_svg(measured_run_dir, tmp_path):
    result = CliRunner().invoke(cli, ["plot", str(measured_run_dir), "--out", str(tmp_path), "--L", "400"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tradeoff_L400.png").is_file() and (tmp_path / "tradeoff_L400.svg").is_file()
    assert result.output.count("wrote ") == 18  # 9 plots: 4 vs L, trade-off, memory, 2 heat maps, quality


def test_report_refuses_a_missing_run_dir(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_report_prints_unreadable_journal_lines_on_the_console(measured_run_dir, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    run = tmp_path / "damaged"
    shutil.copytree(measured_run_dir, run)
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    lines.insert(2, "{not json\n")
    (run / "records.jsonl").write_text("".join(lines))
    result = CliRunner().invoke(cli, ["report", str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "warning: skipped unreadable journal line damaged/records.jsonl:3: not valid JSON" in result.stderr
