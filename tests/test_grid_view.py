"""The grid's live view: rows and footer as cells start and end on several devices (from threads),
the plain summary line off a terminal, the rich table, and the dry run's schedule."""

import io
import re
import threading
from types import SimpleNamespace

from click.testing import CliRunner

from harness.grid import Cell
from harness.grid_view import EntryPlan, GridView, schedule_lines
from harness.results.schema import RunSpec


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_cell(n: int, model: str, device: str, skip: str | None = None) -> Cell:
    spec = RunSpec(model=model, quantization="q4f16_1", device=device, lengths=[200])
    return Cell(spec, None, "dummy", None, None, None, skip_reason=skip, title=f"cell {n}: {model}")


def cells_and_view(estimates=None):
    cells = [
        make_cell(1, "dummy:a", "local"),
        make_cell(2, "dummy:b", "pool:galaxy-s24"),
        make_cell(3, "dummy:c", "pool:galaxy-s24"),
        make_cell(4, "dummy:d", "local"),
        make_cell(5, "dummy:e", "local", skip="over the device's RAM"),
    ]
    estimates = estimates or {1: 60.0, 2: 120.0, 3: 120.0, 4: None}
    by_id = {id(c): estimates.get(n) for n, c in enumerate(cells, start=1)}
    clock, lines = Clock(), []
    view = GridView(io.StringIO(), out=lines.append, estimate=lambda c: by_id[id(c)], clock=clock)
    return cells, view, clock, lines


def test_rows_and_footer_follow_the_cells_from_worker_threads():
    cells, view, clock, lines = cells_and_view()
    with view:
        view.planned(cells, ["local", "adb:s1", "adb:s2"])
        clock.now += 10

        def work(device, cell, status):
            view.started(cell, device)
            view.finished(cell, device, status)

        threads = [
            threading.Thread(target=work, args=("local", cells[0], "done")),
            threading.Thread(target=work, args=("adb:s1", cells[1], "lost")),
            threading.Thread(target=view.started, args=(cells[2], "adb:s2")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        states = {r[0]: r[2] for r in view.rows()}
        assert states == {
            "cell 1: dummy:a": "done",
            "cell 2: dummy:b": "lost → requeued",
            "cell 3: dummy:c": "running",
            "cell 4: dummy:d": "queued",
            "cell 5: dummy:e": "skipped",
        }
        clock.now += 30
        # cell 3 ran 30 s of its 120, cell 2 waits (120), cell 4 has no estimate; adb:s1 is gone
        assert view.footer() == (
            "1/4 done, 1 running, 2 queued, 0 failed, 1 skipped | elapsed 40 s |"
            " ~1 min 45 s left on 2 devices + 1 cell(s) without an estimate"
        )
        view.started(cells[1], "adb:s2")  # requeued onto the other member
        clock.now += 5
        view.finished(cells[1], "adb:s2", "done")
        view.finished(cells[2], None, "failed")  # given up
        row = next(r for r in view.rows() if r[0] == "cell 2: dummy:b")
        assert row == ("cell 2: dummy:b", "adb:s2 (lost on adb:s1)", "done", "5.0 s", "~2 min 00 s")
    # not a terminal: no table, one summary line (cell 4 never ran)
    assert lines == ["grid stopped: 2 cells done, 1 failed, 1 skipped, 1 not run after 45 s"]
    assert view.stream.getvalue() == ""


def test_summary_of_a_finished_grid():
    cells, view, clock, lines = cells_and_view()
    runnable = [c for c in cells if not c.skip_reason]
    with view:
        view.planned(runnable, ["local"])
        for cell in runnable:
            view.started(cell, "local")
            clock.now += 61
            view.finished(cell, "local", "done")
    assert lines == ["grid: 4 cells done, 0 failed in 4 min 04 s"]
    assert view.footer().endswith("| nothing left")


def test_time_left_unknown_without_estimates():
    cells, view, _, _ = cells_and_view(estimates={1: None, 2: None, 3: None, 4: None})
    view.planned(cells, ["local"])
    assert view.footer().endswith("| time left unknown (no earlier results)")


def test_the_rich_table_lists_every_cell_and_the_footer():
    from rich.console import Console

    cells, view, clock, _ = cells_and_view()
    view.planned(cells, ["local", "adb:s1"])
    view.started(cells[0], "local")
    clock.now += 12
    view.finished(cells[0], "local", "failed")
    view.started(cells[3], "local")
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(view.table())
    text = console.export_text()
    for expected in (
        "cell 1: dummy:a",
        "failed",
        "12 s",
        "~1 min 00 s",
        "running",
        "queued",
        "skipped",
        "1 failed, 1 skipped | elapsed 12 s",
    ):
        assert expected in text, expected
    # too many rows for the terminal: running and failed ones stay, the rest is counted
    short = Console(record=True, width=120, file=io.StringIO())
    short.print(view.table(max_rows=3))
    text = short.export_text()
    assert "cell 1: dummy:a" in text and "cell 4: dummy:d" in text
    assert "… 3 more (2 queued, 1 skipped)" in text


def test_on_a_terminal_log_lines_go_above_the_table():
    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    cells, _, clock, _ = cells_and_view()
    stream = FakeTTY()
    view = GridView(stream, estimate=lambda c: 60.0, clock=clock)
    with view:
        view._stdout_tty = True  # the test's stdout is no terminal; the view's log follows it
        view.planned(cells, ["local"])
        view.started(cells[0], "local")
        view.log("  cell 1: dummy:a on local")
        view.finished(cells[0], "local", "done")
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())
    assert "  cell 1: dummy:a on local" in out
    assert "┃ cell" in out  # the table, drawn by rich
    # the final table and the summary are printed above the display, which then drops the table
    assert "grid stopped: 1 cell done, 0 failed, 1 skipped, 3 not run after 0.0 s" in out
    assert out.index("cell 1: dummy:a on local") < out.rindex("grid stopped")


def test_schedule_spreads_a_pools_cells_longest_first():
    pool = EntryPlan(
        "pool:galaxy-s24", [1, 2, 3, 4], [300.0, 200.0, 200.0, None], ["adb:a", "adb:b"]
    )
    local = EntryPlan("local", [5], [100.0], ["local"])
    assert pool.wall_seconds() == 400.0  # 300 | 200 + 200
    lines = schedule_lines([pool, local])
    assert lines[1] == (
        "  pool:galaxy-s24 (2 members: adb:a, adb:b): cells 1, 2, 3, 4, up to 2 at once;"
        " ~6 min 40 s plus 1 cell(s) without earlier results"
    )
    assert lines[2] == "  local (1 device): cells 5, one after another; ~1 min 40 s"
    assert lines[-1] == (
        "estimated wall time with 3 devices: ~6 min 40 s (one cell after another: ~13 min 20 s)"
        " plus 1 cell(s) without earlier results"
    )


GRID = """\
models: ["dummy:tiny-llama", "dummy:tiny-qwen2"]
devices: [local, "pool:galaxy-s24"]
adb_servers: ["127.0.0.1:1"]
tasks: [summ]
lengths: [200]
repeats: 1
max_new_tokens: 4
"""


def test_dry_run_prints_the_schedule(tmp_path, monkeypatch):
    import harness.cli.grid as grid_cli  # noqa: F401  (the command, imported as the CLI does)
    import harness.paths
    from harness.cli import cli

    monkeypatch.setattr(harness.paths, "results_dir", lambda: tmp_path / "results")
    (tmp_path / "lab.yaml").write_text(GRID)
    result = CliRunner().invoke(cli, ["grid", str(tmp_path / "lab.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("schedule:"))
    assert lines[start:] == [
        "schedule: 2 device entries at once, one cell at a time on each device (a pool's cells on"
        " whichever member is free)",
        "  local (1 device): cells 1, 2, one after another; no estimate (no earlier results)",
        "  pool:galaxy-s24 (1 device assumed): cells 3, 4, one after another; no estimate (no"
        " earlier results)",
        lines[start + 3],
        "estimated wall time with 2 devices: unknown plus 4 cell(s) without earlier results",
    ]
    assert lines[start + 3].startswith(
        "    members unknown: the adb server at 127.0.0.1:1 does not answer"
    )


def test_a_view_without_the_plan_adds_cells_as_they_start():
    view = GridView(io.StringIO(), out=lambda line: None, estimate=lambda c: None)
    cell = SimpleNamespace(title="cell 1: x")
    view.started(cell, "local")
    assert view.rows()[0][:3] == ("cell 1: x", "local", "running")
