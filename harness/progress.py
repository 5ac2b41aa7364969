"""Progress for long work: steps (building suites, measuring runs) and amounts (bytes pushed to
a phone, weights packed, a build's percent).

On a terminal it is a rich progress bar on stderr. When stderr is not a TTY (CI logs, a
redirect to a file, ``adb``-driven batch jobs) it prints plain lines with no ANSI codes, so logs
stay greppable and a crash shows how far the work got.

Steps: one plain line per step, the step's message beside the count::

    with progress(len(prompts), "measuring") as bar:
        for p in prompts:
            ...
            bar.advance(p.id)

Amounts: a meter with a total and a unit; library code only calls it with how much more is
done (``update(done)`` sets the amount instead). On a terminal the bar shows rate and time left;
plain output is a line every 10% or every 10 s, whichever is rarer, and a last line with the
total and the average rate::

    with meter(size, f"pushing {name}", "B", min_total=8_000_000) as advance:
        for chunk in chunks:
            send(chunk)
            advance(len(chunk))

    pushing model.tar: 61.2 MB of 190.0 MB (32%), 30.6 MB/s, 4.2 s left
    pushing model.tar: 190.0 MB in 6.2 s (30.6 MB/s)

Below ``min_total`` a meter is silent, so small pushes say nothing. Meters and step bars active
at once (nested, or in the threads of a multi-device run) share one live display per stream.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

EVERY_FRACTION = 0.1  # plain meter lines: at least this share of the total apart ...
EVERY_S = 10.0  # ... and at least this many seconds apart
RICH_REFRESH_S = 0.1  # a meter hands its amount to the rich bar at most this often


class PlainProgress:
    """One line per step: ``description [done/total] message``."""

    def __init__(self, total: int | None, description: str, stream: TextIO):
        self.total = total
        self.description = description
        self.stream = stream
        self.done = 0

    def advance(self, message: str = "", steps: int = 1) -> None:
        self.done += steps
        of = f"/{self.total}" if self.total is not None else ""
        line = f"{self.description} [{self.done}{of}]"
        self.log(f"{line} {message}" if message else line)

    def log(self, message: str) -> None:
        """A line that is not a step (a warning, a skipped cell)."""
        print(message, file=self.stream, flush=True)


class RichProgress:
    """A rich progress bar; the latest step's message is shown beside it."""

    def __init__(self, bar, task_id, description: str):
        self._bar = bar
        self._task = task_id
        self.description = description

    def advance(self, message: str = "", steps: int = 1) -> None:
        label = f"{self.description}: {message}" if message else self.description
        self._bar.update(self._task, advance=steps, description=label)

    def log(self, message: str) -> None:
        self._bar.console.print(message, highlight=False, markup=False)


@contextmanager
def progress(
    total: int | None, description: str, stream: TextIO | None = None
) -> Iterator[PlainProgress | RichProgress]:
    """Yield an object with ``advance(message="", steps=1)`` and ``log(message)``."""
    stream = stream if stream is not None else sys.stderr
    if not is_tty(stream):
        yield PlainProgress(total, description, stream)
        return
    with _shared_bar(stream) as bar:
        yield RichProgress(bar, bar.add_task(description, total=total, kind="steps"), description)


class Meter:
    """An amount of work done toward ``total`` (None: unknown) counted in ``unit``: ``"B"``
    (shown as kB/MB/GB), ``"%"`` (a percent, no rate) or a noun (``"tensors"``).

    Calling it, or ``advance(n)``, adds ``n``; ``update(done)`` sets the amount (never back)."""

    def __init__(self, total: float | None, label: str, unit: str, stream: TextIO, clock):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream
        self.done: float = 0
        self._clock = clock
        self.started = clock()
        self._origin: tuple[float, float] | None = None  # (time, done) of the first report

    def __call__(self, n: float = 1) -> None:
        self.advance(n)

    def advance(self, n: float = 1) -> None:
        if self._origin is None:  # counted from the start: the first n took since then
            self._origin = (self.started, self.done)
        self.done += n
        self._changed()

    def update(self, done: float) -> None:
        """Set the amount done (a build's percent); a smaller value than before is ignored."""
        if done <= self.done:
            return
        if self._origin is None:  # a resumed build starts at its first percent, not at 0
            self._origin = (self._clock(), done)
        self.done = done
        self._changed()

    def log(self, message: str) -> None:
        """A line that is not progress."""
        print(message, file=self.stream, flush=True)

    def rate(self, now: float) -> float | None:
        """Amount per second since the first report (None before there is one to tell)."""
        if self._origin is None or now - self._origin[0] <= 0 or self.done <= self._origin[1]:
            return None
        return (self.done - self._origin[1]) / (now - self._origin[0])

    def status(self, now: float) -> str:
        """``61.2 MB of 190.0 MB (32%), 30.6 MB/s, 4.2 s left``."""
        rate = self.rate(now)
        left = (self.total - self.done) / rate if rate and self.total is not None else None
        return _status(self.done, self.total, self.unit, rate, left)

    def summary(self, now: float, finished: bool = True) -> str:
        """The last line: ``190.0 MB in 6.2 s (30.6 MB/s)``, or where it stopped."""
        elapsed, done = now - self.started, _amount(self.done, self.unit)
        if not finished:
            return f"{self.label}: stopped at {done} after {format_duration(elapsed)}"
        line = f"{self.label}: {done} in {format_duration(elapsed)}"
        if self.unit != "%" and elapsed > 0:
            line += f" ({_rate(self.done / elapsed, self.unit)})"
        return line

    def _changed(self) -> None:
        pass

    def _finish(self, finished: bool) -> None:
        pass


class PlainMeter(Meter):
    """A line once the amount passes the next multiple of ``every_fraction`` of the total, if
    ``every_s`` seconds have passed since the last (so whichever is rarer), then a summary
    line; with no total, a line every ``every_s`` seconds."""

    def __init__(self, *args, every_s: float, every_fraction: float):
        super().__init__(*args)
        self._every_s, self._every_fraction = every_s, every_fraction
        self._last = (self.started, 0.0)  # (time, done) of the last line

    def _changed(self) -> None:
        now = self._clock()
        if now - self._last[0] < self._every_s:
            return
        if self.total is not None:
            if self.done >= self.total:
                return  # the summary line says it is done
            step = self._every_fraction * self.total  # lines on its multiples: 10%, 20%, ...
            if step > 0 and self.done < (self._last[1] // step + 1) * step:
                return
        self._last = (now, self.done)
        self.log(f"{self.label}: {self.status(now)}")

    def _finish(self, finished: bool) -> None:
        self.log(self.summary(self._clock(), finished))


class RichMeter(Meter):
    """A task on the shared rich display; its last line is printed above the bar when it ends."""

    def __init__(self, *args, bar):
        super().__init__(*args)
        self._bar = bar
        self._task = bar.add_task(self.label, total=self.total, kind="meter", meter=self)
        self._shown = self.started

    def log(self, message: str) -> None:
        self._bar.console.print(message, highlight=False, markup=False)

    def _changed(self) -> None:
        now = self._clock()
        if now - self._shown >= RICH_REFRESH_S or (self.total and self.done >= self.total):
            self._shown = now
            self._bar.update(self._task, completed=self.done, refresh=True)

    def _finish(self, finished: bool) -> None:
        self._bar.remove_task(self._task)
        self._bar.refresh()  # else the live display redraws the removed bar below the line
        self.log(self.summary(self._clock(), finished))


class SilentMeter(Meter):
    """Counts, prints no progress (a total below the meter's ``min_total``)."""


@contextmanager
def meter(
    total: float | None,
    label: str,
    unit: str = "B",
    *,
    stream: TextIO | None = None,
    min_total: float = 0,
    every_s: float | None = None,
    every_fraction: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Meter]:
    """Yield a :class:`Meter` (callable: ``advance(n)``) for ``total`` of ``unit``: a rich bar on a
    terminal, plain lines otherwise, nothing when ``total`` is below ``min_total``. Plain lines
    come every ``every_fraction`` of the total and ``every_s`` seconds (default: EVERY_*)."""
    stream = stream if stream is not None else sys.stderr
    every_s = EVERY_S if every_s is None else every_s
    every_fraction = EVERY_FRACTION if every_fraction is None else every_fraction
    args = (total, label, unit, stream, clock)
    if total is not None and total < min_total:
        yield SilentMeter(*args)
        return
    if not is_tty(stream):
        m = PlainMeter(*args, every_s=every_s, every_fraction=every_fraction)
        with _finishing(m):
            yield m
        return
    with _shared_bar(stream, clock) as bar:
        m = RichMeter(*args, bar=bar)
        with _finishing(m):
            yield m


@contextmanager
def _finishing(m: Meter) -> Iterator[None]:
    try:
        yield
    except BaseException:
        m._finish(False)
        raise
    m._finish(True)


def _status(
    done: float,
    total: float | None,
    unit: str,
    rate: float | None,
    left: float | None,
    percent: bool = True,  # off beside a bar, which shows it
) -> str:
    if unit == "%":
        parts = [f"{done:.0f}%"]
    elif total:
        of = _amount(done, unit) if unit == "B" else f"{done:.0f}"  # 61.2 MB of, 240 of
        parts = [f"{of} of {_amount(total, unit)}" + (f" ({done / total:.0%})" if percent else "")]
    else:
        parts = [_amount(done, unit)]
    if rate and unit != "%":
        parts.append(_rate(rate, unit))
    if left is not None:
        parts.append(f"{format_duration(left)} left")
    return ", ".join(parts)


def _amount(n: float, unit: str) -> str:
    if unit == "B":
        for size, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if n >= size:
                return f"{n / size:.{2 if name == 'GB' else 1}f} {name}"
        return f"{n:.0f} B"
    if unit == "%":
        return f"{n:.0f}%"
    return f"{n:.0f} {unit}"


def _rate(per_s: float, unit: str) -> str:
    return f"{_amount(per_s, unit)}/s" if unit == "B" else f"{per_s:.1f} {unit}/s"


def format_duration(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


_live: dict[int, list] = {}  # id(stream) -> [rich Progress, users]: one live display per stream
_live_lock = threading.Lock()


@contextmanager
def live_panel(render: Callable[[], object], stream: TextIO | None = None):
    """Show ``render()`` (a rich renderable, drawn anew on each refresh: about 10 a second) on
    the live display of ``stream``, above the bars of :func:`progress` and :func:`meter`, so
    neither draws over the other; gone when the block ends. Yields the display (a rich Progress:
    ``.console.print`` writes above it, ``.refresh()`` redraws it now), or None when ``stream``
    is not a terminal (then nothing is drawn). ``render`` runs on rich's refresh thread: it must
    be thread-safe."""
    stream = stream if stream is not None else sys.stderr
    if not is_tty(stream):
        yield None
        return
    with _shared_bar(stream) as bar:
        bar.panels.append(render)
        try:
            yield bar
        finally:
            bar.panels.remove(render)
            bar.refresh()


@contextmanager
def _shared_bar(stream: TextIO, clock: Callable[[], float] = time.monotonic):
    """The rich Progress drawing on ``stream``, started by its first user, stopped by its last."""
    from rich.console import Console  # imported here: only interactive runs draw a bar
    from rich.progress import BarColumn, Progress, TextColumn

    class Display(Progress):
        """The bars, below the panels of :func:`live_panel`."""

        def __init__(self, *args, **kwargs):
            self.panels: list[Callable[[], object]] = []
            super().__init__(*args, **kwargs)

        def get_renderables(self):
            for render in list(self.panels):
                yield render()
            if self.tasks or not self.panels:  # no empty line below a panel
                yield from super().get_renderables()

    with _live_lock:
        entry = _live.get(id(stream))
        if entry is None:
            columns = (TextColumn("{task.description}"), BarColumn(24), _detail_column())
            console = Console(file=stream)
            bar = Display(*columns, console=console, transient=False, get_time=clock)
            bar.start()
            entry = _live[id(stream)] = [bar, 0]
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        with _live_lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _live[id(stream)]
                entry[0].stop()


def _detail(task) -> str:
    """What the rich bar shows beside a task: ``3/10 0:01:12`` for steps, a meter's status."""
    m = task.fields.get("meter")
    if m is None:
        of = f"/{task.total:.0f}" if task.total is not None else ""
        elapsed = int(task.finished_time or task.elapsed or 0)
        clock = f"{elapsed // 3600}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}"
        return f"{task.completed:.0f}{of} {clock}"
    speed = task.speed  # rich's, over its recent samples: follows a rate that changes
    left = (m.total - m.done) / speed if speed and m.total is not None else None
    return _status(m.done, m.total, m.unit, speed, left, percent=False)


def _detail_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class DetailColumn(ProgressColumn):
        def render(self, task):
            return Text(_detail(task))

    return DetailColumn()


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
