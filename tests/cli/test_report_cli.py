"""``slm-bench report`` and ``slm-bench plot`` through click's CliRunner."""

import json

from click.testing import CliRunner

from harness.cli import cli
from harness.report import plots as plots_module


def test_report_writes_files_and_prints_json(measured_run_dir, tmp_path, monkeypatch):
    # rendered in tests/report
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    result = CliRunner().invoke(
        cli, ["report", str(measured_run_dir), "--out", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # stdout is only the JSON; "wrote ..." lines go to stderr
    assert {row["task"] for row in rows} >= {"summ", "qs", "qa", "all"}
    assert "otps_median" in rows[0]
    for name in ("report.md", "report.html", "summary.csv"):
        assert (tmp_path / name).is_file()
        assert f"wrote {tmp_path / name}" in result.stderr


def test_plot_writes_png_and_svg(measured_run_dir, tmp_path):
    result = CliRunner().invoke(
        cli, ["plot", str(measured_run_dir), "--out", str(tmp_path), "--L", "400"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tradeoff_L400.png").is_file() and (tmp_path / "tradeoff_L400.svg").is_file()
    # 9 plots: 4 vs L, trade-off, memory, 2 heat maps, quality
    assert result.output.count("wrote ") == 18


def test_report_refuses_a_missing_run_dir(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_report_prints_unreadable_journal_lines_on_the_console(
    measured_run_dir, tmp_path, monkeypatch
):
    import shutil

    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    run = tmp_path / "damaged"
    shutil.copytree(measured_run_dir, run)
    lines = (run / "records.jsonl").read_text().splitlines(keepends=True)
    lines.insert(2, "{not json\n")
    (run / "records.jsonl").write_text("".join(lines))
    result = CliRunner().invoke(cli, ["report", str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (
        "warning: skipped unreadable journal line damaged/records.jsonl:3: not valid JSON"
        in result.stderr
    )


QUICK_GRID = {"smollm2-135m-instruct": 134_515_008, "smollm-360m-instruct": 361_821_120}


def test_report_and_plot_take_a_grid_folder(tmp_path, monkeypatch):
    from tests.report.grid_folders import damage_line, write_grid

    grid = tmp_path / "grid-quick"
    cells = write_grid(grid, QUICK_GRID)
    damage_line(cells[1], 3)
    plotted = CliRunner().invoke(cli, ["plot", str(grid), "--out", str(tmp_path / "plots")])
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "plots" / "tradeoff_L600.png").is_file()
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    result = CliRunner().invoke(
        cli, ["report", str(grid), "--out", str(tmp_path / "out"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert {row["model"] for row in json.loads(result.stdout)} == set(QUICK_GRID)
    # The unreadable line is named on the console with its cell's file, line and the reason.
    warning = (
        f"warning: skipped unreadable journal line {cells[1].name}/records.jsonl:3: not valid JSON"
    )
    assert warning in result.stderr


def test_compare_takes_two_grid_folders_and_warns_of_unreadable_lines(tmp_path):
    from tests.report.grid_folders import damage_line, write_grid

    write_grid(tmp_path / "before", QUICK_GRID, otps=20.0)
    after = write_grid(tmp_path / "after", QUICK_GRID, otps=10.0)
    damage_line(after[0], 2)
    args = [
        "compare",
        str(tmp_path / "before"),
        str(tmp_path / "after"),
        "--fail-above",
        "10",
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output  # OTPS halved in every cell
    cells = json.loads(result.stdout)
    assert len(cells) == 4 and {c["model"] for c in cells} == set(QUICK_GRID)
    warning = (
        "warning: skipped unreadable journal line in RUN_B: "
        f"{after[0].name}/records.jsonl:2: not valid JSON"
    )
    assert warning in result.stderr
    assert "REGRESSION: 4 of 4 cells" in result.stderr


def test_a_folder_without_runs_is_a_one_line_error(tmp_path, capsys):
    import pytest

    from harness.cli import main

    (tmp_path / "notes").mkdir()
    with pytest.raises(SystemExit) as stop:
        main(["report", str(tmp_path / "notes")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "holds neither a run (run.json, records.jsonl) nor run folders" in err
    )
    assert "`slm-bench grid`" in err


def test_grid_reference_typo_stops_before_any_cell(tmp_path, capsys, monkeypatch):
    import pytest

    import harness.grid
    from harness.cli import main

    monkeypatch.setattr(
        harness.grid, "plan_grid", lambda *args, **kw: pytest.fail("planned despite the typo")
    )
    grid_file = tmp_path / "typo.yaml"
    grid_file.write_text("models: [smollm2-135m-instruct]\nreference: slimlm-s42\n")
    with pytest.raises(SystemExit) as stop:
        main(["grid", str(grid_file), "--dry-run"])
    assert stop.value.code == 2
    expected = f"error: unknown reference 'slimlm-s42' in {grid_file}; available: slimlm-s24\n"
    assert capsys.readouterr().err == expected


def test_grid_reference_puts_the_paper_in_the_grid_report(tmp_path, monkeypatch):
    import harness.grid
    from tests.report.grid_folders import write_grid

    out = tmp_path / "grid-s24"

    def run_grid(spec, out_dir, **options):  # the cells as a finished grid leaves them, none failed
        return harness.grid.RunDirs(write_grid(out_dir, {"smollm-135m-instruct": 134_515_008}))

    monkeypatch.setattr(harness.grid, "run_grid", run_grid)
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])
    grid_file = tmp_path / "s24.yaml"
    grid_file.write_text("models: [smollm-135m-instruct]\nreference: slimlm-s24\n")
    result = CliRunner().invoke(cli, ["grid", str(grid_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "report" / "report.md").read_text()
    assert "## Reference: slimlm-s24" in md and "Galaxy S24, SlimLM paper" in md
    reference = md.split("## Reference: slimlm-s24", 1)[1]
    # measured beside published, L=200 is in both
    assert "| smollm-135m-instruct | 200 |" in reference
