"""A grid as it runs: which cell runs where, what is done, what is left and for how long.

``harness.grid.run_grid`` tells a view (``view=``) the plan (``planned(cells, devices)``), and,
from its worker threads, when each cell starts on a device (``started``) and ends there
(``finished``: "done", "failed", or "lost" when its phone left, the cell then queued again for
another member of its pool; ``finished(cell, None, "failed")`` when a cell is given up).

On a terminal (stderr a TTY) :class:`GridView` draws a live table, one row per cell: its device,
its state, how long it ran and its estimate from earlier results (as ``grid --dry-run`` makes
it), with a footer of counts, elapsed time and the estimated time left. The table shares the
live display of ``harness.progress`` (its bars are drawn below it), and the grid's log lines,
given to :meth:`GridView.log`, are printed above it. Elsewhere (a CI log, a redirect) it draws
nothing: the grid's log lines already say each start and failure. Either way a last line sums the
grid up: cells done, failed and skipped, and the wall time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TextIO

from harness.progress import format_duration, is_tty, live_panel

# Row states. LOST: its device left mid-cell; the scheduler queues it again for another member
# (or gives it up: then FAILED).
QUEUED, RUNNING, DONE, FAILED, LOST, SKIPPED = (
    "queued",
    "running",
    "done",
    "failed",
    "lost → requeued",
    "skipped",
)
STYLES = {RUNNING: "bold cyan", DONE: "green", FAILED: "bold red", LOST: "yellow", SKIPPED: "dim"}


@dataclass
class Row:
    title: str
    state: str = QUEUED
    device: str = ""  # where it runs or ran ("" while queued)
    estimate: float | None = None  # seconds, from earlier results
    started: float | None = None
    ended: float | None = None
    lost_on: list[str] = field(default_factory=list)  # devices that left while it ran there


def default_estimate(cell) -> float | None:
    """A cell's duration from earlier results, as the dry run estimates it."""
    from harness.grid import estimate_seconds
    from harness.paths import results_dir

    return estimate_seconds(cell, results_dir())


class GridView:
    """The grid's progress: a live table on a terminal, a summary line at the end everywhere.

    Thread-safe: ``started``/``finished``/``log`` come from the grid's worker threads, the table
    is drawn on rich's refresh thread. Use it as a context manager (it closes on Ctrl-C too)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        out: Callable[[str], None] | None = None,
        estimate: Callable[[object], float | None] = default_estimate,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self._out = out  # where log lines go without a live table; None: click.echo
        self._estimate = estimate
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[int, Row] = {}  # id(cell) -> row, in plan order
        self._devices: list[str] = []
        self._lost_devices: set[str] = set()
        self._began: float | None = None
        self._stack = ExitStack()
        self._display = None  # the live display (harness.progress) while the table is shown
        self._stdout_tty = False

    # The grid's side: the plan, then each cell's start and end.

    def planned(self, cells, devices: list[str]) -> None:
        """Every cell of the grid (skipped ones included) and the devices that will run them."""
        rows = {}
        for cell in cells:
            skipped = bool(getattr(cell, "skip_reason", None))
            rows[id(cell)] = Row(
                cell.title,
                SKIPPED if skipped else QUEUED,
                "" if not skipped else str(cell.spec.device),
                None if skipped else self._estimate(cell),
            )
        with self._lock:
            self._rows = rows
            self._devices = list(devices)
            self._began = self._clock()

    def started(self, cell, device: str) -> None:
        with self._lock:
            row = self._row(cell)
            row.state, row.device, row.started, row.ended = RUNNING, device, self._clock(), None
            if self._began is None:
                self._began = row.started
        self._refresh()

    def finished(self, cell, device: str | None, status: str) -> None:
        with self._lock:
            row = self._row(cell)
            row.ended = self._clock()
            if status == "lost":
                row.state = LOST
                if device is not None:
                    row.lost_on.append(device)
                    self._lost_devices.add(device)
            else:
                row.state = DONE if status == "done" else FAILED
        self._refresh()

    def log(self, message: str) -> None:
        """One of the grid's log lines: above the table on a terminal, else on stdout."""
        display = self._display
        if display is not None and self._stdout_tty:
            display.console.print(message, highlight=False, markup=False, soft_wrap=True)
        elif self._out is not None:
            self._out(message)
        else:
            import click

            click.echo(message)

    # Opening and closing.

    def open(self) -> GridView:
        self._stdout_tty = is_tty(sys.stdout)  # before the live display takes sys.stdout over
        self._display = self._stack.enter_context(live_panel(self._render, self.stream))
        return self

    def close(self, interrupted: bool = False) -> None:
        """Stop drawing: the table's last state stays on the terminal; then the summary line."""
        display, self._display = self._display, None
        with self._lock:
            planned = bool(self._rows)
        if display is not None and planned:  # above the display, which then drops the table
            display.console.print(self.table())
            display.console.print(self.summary(interrupted), highlight=False, markup=False)
        self._stack.close()
        if display is None and planned:
            self.log(self.summary(interrupted))

    def __enter__(self) -> GridView:
        return self.open()

    def __exit__(self, kind, exc, tb) -> None:
        self.close(interrupted=kind is not None)

    # What it shows.

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """The table's rows as text: title, device, state, elapsed, estimate."""
        now = self._clock()
        with self._lock:
            return [self._cells(row, now) for row in self._rows.values()]

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [row.state for row in self._rows.values()]
        return {state: states.count(state) for state in (DONE, RUNNING, QUEUED, FAILED, SKIPPED)}

    def footer(self) -> str:
        """``2/6 done, 2 running, 1 queued, 1 failed | elapsed 3 min 02 s | ~4 min 10 s left on
        2 devices``."""
        now = self._clock()
        with self._lock:
            rows = list(self._rows.values())
            began = self._began
            devices = max(len([d for d in self._devices if d not in self._lost_devices]), 1)
        n = lambda state: sum(1 for r in rows if r.state == state)  # noqa: E731
        runnable = sum(1 for r in rows if r.state != SKIPPED)
        parts = [f"{n(DONE)}/{runnable} done", f"{n(RUNNING)} running"]
        parts.append(f"{n(QUEUED) + n(LOST)} queued")
        parts.append(f"{n(FAILED)} failed")
        if n(SKIPPED):
            parts.append(f"{n(SKIPPED)} skipped")
        elapsed = format_duration(now - began) if began is not None else "0.0 s"
        return f"{', '.join(parts)} | elapsed {elapsed} | {_left(rows, now, devices)}"

    def summary(self, interrupted: bool = False) -> str:
        """The last line: ``grid: 5 cells done, 1 failed, 2 skipped in 12 min 04 s``."""
        counts = self.counts()
        with self._lock:
            began = self._began
        wall = format_duration(self._clock() - began) if began is not None else "0.0 s"
        done = counts[DONE]
        parts = [f"{done} cell{'' if done == 1 else 's'} done", f"{counts[FAILED]} failed"]
        if counts[SKIPPED]:
            parts.append(f"{counts[SKIPPED]} skipped")
        left = counts[QUEUED] + counts[RUNNING]
        if interrupted or left:
            parts.append(f"{left} not run")
            return f"grid stopped: {', '.join(parts)} after {wall}"
        return f"grid: {', '.join(parts)} in {wall}"

    def table(self, max_rows: int | None = None):
        """The rich table and its footer below: at most ``max_rows`` rows (running, failed and
        lost ones first, then the next queued, then the latest done), the others counted in a
        last row. Nothing before the plan is known."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        rows = self.rows()
        if not rows:
            return Text("")
        shown = list(range(len(rows)))
        if max_rows is not None and len(rows) > max_rows:
            urgent = [i for i, r in enumerate(rows) if r[2] in (RUNNING, FAILED, LOST)]
            queued = [i for i, r in enumerate(rows) if r[2] == QUEUED]
            rest = [i for i, r in enumerate(rows) if r[2] in (DONE, SKIPPED)][::-1]
            room = max(max_rows - 1, 1)  # one row says what is left out
            shown = sorted((urgent + queued + rest)[:room])
        table = Table(expand=False)
        for name, justify in (
            ("cell", "left"),
            ("device", "left"),
            ("state", "left"),
            ("elapsed", "right"),
            ("estimate", "right"),
        ):
            table.add_column(name, justify=justify, no_wrap=name != "cell")
        for i in shown:
            title, device, state, elapsed, estimate = rows[i]
            table.add_row(title, device, Text(state, STYLES.get(state, "")), elapsed, estimate)
        hidden = [rows[i][2] for i in range(len(rows)) if i not in set(shown)]
        if hidden:
            what = ", ".join(f"{hidden.count(s)} {s}" for s in dict.fromkeys(hidden))
            table.add_row(Text(f"… {len(hidden)} more ({what})", "dim"), "", "", "", "")
        return Group(table, Text(self.footer()))

    # Inside.

    def _render(self, max_rows: int | None = -1):
        if max_rows == -1:  # the live display: what fits on the terminal
            display = self._display
            height = display.console.height if display is not None else 24
            max_rows = max(height - 12, 5)  # the table's frame, the footer, some bars below
        return self.table(max_rows)

    def _row(self, cell) -> Row:
        row = self._rows.get(id(cell))
        if row is None:  # a view not told the plan: the cell joins the table as it starts
            row = self._rows[id(cell)] = Row(getattr(cell, "title", "") or str(cell))
        return row

    def _cells(self, row: Row, now: float) -> tuple[str, str, str, str, str]:
        device = row.device
        if row.lost_on and row.state != LOST:
            device += f" (lost on {', '.join(row.lost_on)})"
        if row.started is None or row.state in (QUEUED, SKIPPED, LOST):
            elapsed = ""
        else:
            elapsed = format_duration((row.ended if row.ended is not None else now) - row.started)
        if row.state == SKIPPED:
            estimate = ""
        else:
            estimate = f"~{format_duration(row.estimate)}" if row.estimate is not None else "?"
        return row.title, device, row.state, elapsed, estimate

    def _refresh(self) -> None:
        """Redraw now (outside the view's lock: the display's refresh renders the table)."""
        display = self._display
        if display is not None:
            display.refresh()


def _left(rows: list[Row], now: float, devices: int) -> str:
    """The remaining cells' estimates (a running one's less what it ran) over the devices."""
    remaining = [r for r in rows if r.state in (QUEUED, RUNNING, LOST)]
    if not remaining:
        return "nothing left"
    known = [r for r in remaining if r.estimate is not None]
    if not known:
        return "time left unknown (no earlier results)"
    seconds = sum(
        max(r.estimate - (now - r.started), 0) if r.state == RUNNING and r.started else r.estimate
        for r in known
    )
    on = f" on {devices} devices" if devices > 1 else ""
    line = f"~{format_duration(seconds / devices)} left{on}"
    if len(known) < len(remaining):
        line += f" + {len(remaining) - len(known)} cell(s) without an estimate"
    return line


# -- the dry run's schedule ---------------------------------------------------------------------


@dataclass
class EntryPlan:
    """A device entry of the grid (a device, or a pool) and the cells aimed at it."""

    entry: str
    cells: list[int]  # the cells' numbers, as the grid's log names them ("cell 3")
    estimates: list[float | None]
    members: list[str] | None  # None: a pool whose members could not be listed
    why_unknown: str = ""

    @property
    def devices(self) -> int:
        return len(self.members) if self.members else 1

    @property
    def unknown(self) -> int:
        return sum(1 for e in self.estimates if e is None)

    def wall_seconds(self) -> float:
        """The entry's wall time: its known cells, longest first, each onto the member with the
        least work so far (a cell is never split between members)."""
        loads = [0.0] * self.devices
        for seconds in sorted((e for e in self.estimates if e is not None), reverse=True):
            loads[loads.index(min(loads))] += seconds
        return max(loads)


def plan_entries(grid, cells, estimates: dict[int, float | None]) -> list[EntryPlan]:
    """The runnable cells grouped by device entry, a pool's members listed where its adb
    servers answer. ``estimates``: id(cell) -> seconds (None: no earlier results)."""
    from harness.devices.lab import expand_pool, is_pool
    from harness.errors import UserError

    entries: dict[str, EntryPlan] = {}
    for number, cell in enumerate(cells, start=1):
        if cell.skip_reason:
            continue
        entry = cell.spec.device
        if entry not in entries:
            members, why = [entry], ""
            if is_pool(entry):
                try:
                    members = expand_pool(entry, grid.servers)
                except UserError as exc:
                    members, why = None, str(exc)
            entries[entry] = EntryPlan(entry, [], [], members, why)
        entries[entry].cells.append(number)
        entries[entry].estimates.append(estimates.get(id(cell)))
    return list(entries.values())


def schedule_lines(entries: list[EntryPlan]) -> list[str]:
    """What ``grid --dry-run`` prints after its table: which cells run at once, on what, and the
    estimated wall time (entries run at once, each device one cell at a time)."""
    if not entries:
        return ["schedule: no cell to run"]
    devices = sum(e.devices for e in entries)
    lines = [
        f"schedule: {len(entries)} device entr{'y' if len(entries) == 1 else 'ies'} at once,"
        " one cell at a time on each device (a pool's cells on whichever member is free)"
    ]
    for e in entries:
        numbers = ", ".join(str(n) for n in e.cells)
        if e.members is None:
            where = "1 device assumed"
        elif e.members == [e.entry]:
            where = "1 device"
        else:
            where = f"{len(e.members)} members: {', '.join(e.members)}"
        at_once = min(e.devices, len(e.cells))
        how = "one after another" if at_once == 1 else f"up to {at_once} at once"
        seconds = e.wall_seconds() if len(e.estimates) > e.unknown else None
        lines.append(
            f"  {e.entry} ({where}): cells {numbers}, {how}; {_estimate_text(seconds, e.unknown)}"
        )
        if e.members is None:
            lines.append(f"    members unknown: {e.why_unknown}")
    known = [e.wall_seconds() for e in entries if len(e.estimates) > e.unknown]
    serial = sum(s for e in entries for s in e.estimates if s is not None)
    unknown = sum(e.unknown for e in entries)
    wall = f"~{format_duration(max(known))}" if known else "unknown"
    line = f"estimated wall time with {devices} device{'s' if devices != 1 else ''}: {wall}"
    if known:
        line += f" (one cell after another: ~{format_duration(serial)})"
    if unknown:
        line += f" plus {unknown} cell(s) without earlier results"
    lines.append(line)
    return lines


def _estimate_text(seconds: float | None, unknown: int) -> str:
    text = f"~{format_duration(seconds)}" if seconds is not None else "no estimate"
    if unknown and seconds is not None:
        text += f" plus {unknown} cell(s) without earlier results"
    elif unknown:
        text += " (no earlier results)"
    return text
