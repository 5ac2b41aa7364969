"""Progress for long work (building suites, measuring runs).

On a terminal it is a rich progress bar on stderr. When stderr is not a TTY (CI logs, a
redirect to a file, ``adb``-driven batch jobs) it prints one plain line per step with no
ANSI codes, so logs stay greppable and a crash shows the last finished step::

    with progress(len(prompts), "measuring") as bar:
        for p in prompts:
            ...
            bar.advance(p.id)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


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
    if not _is_tty(stream):
        yield PlainProgress(total, description, stream)
        return
    from rich.console import Console  # imported here: only interactive runs draw a bar
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(file=stream), transient=False) as bar:
        yield RichProgress(bar, bar.add_task(description, total=total), description)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
