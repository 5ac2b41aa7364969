"""A grid's output folder is read wherever a run folder is: report, plot, compare."""

from __future__ import annotations

import pytest

from harness.errors import UserError
from harness.report import plots as plots_module
from harness.report.aggregate import expand_run_dirs, load_runs
from harness.report.compare import compare_runs
from harness.report.render import write_report
from tests.report.grid_folders import damage_line, write_cell, write_grid

MODELS = {"smollm2-135m-instruct": 134_515_008, "smollm-360m-instruct": 361_821_120}


@pytest.fixture
def no_plots(monkeypatch):
    # drawn in test_plots
    monkeypatch.setattr(plots_module, "write_plots", lambda *args, **kwargs: [])


def test_a_grid_folder_is_its_cells_and_a_run_folder_is_itself(tmp_path):
    cells = write_grid(tmp_path / "grid", MODELS)
    assert expand_run_dirs([tmp_path / "grid"]) == sorted(cells)  # report/ is no cell
    assert expand_run_dirs([cells[1]]) == [cells[1]]
    # A cell named beside its grid is read once: its records must not count twice.
    assert expand_run_dirs([cells[0], tmp_path / "grid"]) == [cells[0], cells[1]]


def test_a_folder_without_runs_names_both_options(tmp_path):
    (tmp_path / "empty" / "report").mkdir(parents=True)
    with pytest.raises(UserError) as error:
        load_runs([tmp_path / "empty"])
    message = str(error.value)
    assert "\n" not in message
    assert "holds neither a run (run.json, records.jsonl) nor run folders" in message
    assert "`slm-bench run`" in message and "`slm-bench grid`" in message


def test_report_of_a_grid_folder_has_every_cell(tmp_path, no_plots):
    cells = write_grid(tmp_path / "grid", MODELS)
    outputs = write_report([tmp_path / "grid"], tmp_path / "out")
    pooled = outputs.summary[outputs.summary["task"] == "all"]
    assert sorted(set(pooled["model"])) == sorted(MODELS)
    assert set(pooled["n"]) == {2}  # 2 repeats per model and L: no cell read twice
    runs = outputs.markdown.read_text().split("## Runs", 1)[1].split("\n\n")[1]
    for cell in cells:
        assert runs.count(cell.name) == 1  # each cell listed once, its run id not repeated


def test_report_of_a_grid_folder_against_a_baseline_grid(tmp_path, no_plots):
    write_grid(tmp_path / "old", MODELS, otps=20.0)
    write_grid(tmp_path / "new", MODELS, otps=30.0)
    outputs = write_report([tmp_path / "new"], tmp_path / "out", baseline=tmp_path / "old")
    pooled = outputs.summary[outputs.summary["task"] == "all"]
    assert list(pooled["otps_ratio"]) == pytest.approx([1.5] * len(pooled)) and len(
        pooled
    ) == 2 * len(MODELS)


def test_compare_two_grid_folders_matches_every_cell(tmp_path):
    write_grid(tmp_path / "a", MODELS, otps=20.0)
    b_cells = write_grid(tmp_path / "b", MODELS, otps=10.0)
    damage_line(b_cells[0], 2)
    comparison = compare_runs([tmp_path / "a"], [tmp_path / "b"])
    assert sorted(set(comparison.cells["model"])) == sorted(MODELS) and len(comparison.cells) == 4
    assert list(comparison.cells["otps_slowdown_pct"]) == pytest.approx([100.0] * 4)  # OTPS halved
    assert comparison.unreadable == [f"RUN_B: {b_cells[0].name}/records.jsonl:2: not valid JSON"]


def test_grid_cells_of_the_same_model_in_two_grids_stay_apart(tmp_path, no_plots):
    """One report over two grids that ran the same cell: both are listed, neither overwrites the
    other."""
    first = write_cell(tmp_path / "g1", "smollm2-135m-instruct", MODELS["smollm2-135m-instruct"])
    second = write_cell(tmp_path / "g2", "smollm2-135m-instruct", MODELS["smollm2-135m-instruct"])
    data = load_runs([tmp_path / "g1", tmp_path / "g2"])
    assert sorted(data.infos) == sorted([first.name, f"g2/{second.name}"])
    assert len(data.measured) == 8
