"""Bundles compiled ahead: while phones measure, the host compiles what the next cells need.

A grid of large models spends minutes compiling each bundle (Llama-3.1-8B: several); with the
phones busy measuring the cells before, that time can be spent now. One thread walks the queued
cells in plan order and builds each distinct bundle once, through the engine's own cached build:
a cell that reaches its bundle later finds it built (or waits on its lock while it is being
built). It compiles one bundle at a time (the TVM engine's process-wide lock: an 8B compile peaks
near 4 GB), and never when the desktop is itself one of the grid's devices, since a compile
would disturb its measurements.
"""

from __future__ import annotations

import threading

from harness.errors import UserError


def start(cells: list, members: dict[str, list[str]], adb_server: str | None, log):
    """Start compiling ahead for ``cells`` (``harness.grid.Cell``, in plan order) on a daemon
    thread; returns a ``stop()`` that waits for the bundle in progress, or None when nothing is
    compiled ahead (the desktop measures, or a single cell)."""
    devices = {d for c in cells for d in members[c.spec.device]}
    if "local" in devices or len(cells) < 2:
        return None
    stopping = threading.Event()
    thread = threading.Thread(
        target=_compile_all, args=(cells, members, adb_server, log, stopping), daemon=True
    )
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join()

    return stop


def _compile_all(cells, members, adb_server, log, stopping: threading.Event) -> None:
    from harness.devices import open_device

    done: set[tuple] = set()
    opened: dict[str, object] = {}  # a pool's cells share its first member: asked once
    for cell in cells[1:]:  # the first cells start at once: their own runs compile them
        if stopping.is_set():
            return
        try:
            spec = members[cell.spec.device][0]
            if spec not in opened:
                opened[spec] = open_device(spec, cell.spec.target, adb_server)
            key = _bundle_of(cell, opened[spec])
            if key is None or key in done:
                continue
            done.add(key)
            _build(*key, log)
        except UserError as exc:  # the cell's own run reports it, with its context
            log(f"compile ahead: {cell.title}: {exc} (its run will say so)")
        except Exception as exc:  # ahead of time only: the cell's own run retries it
            log(f"compile ahead: {cell.title}: {type(exc).__name__}: {exc} (its run retries)")


def _bundle_of(cell, device) -> tuple | None:
    """(model, quantization, target) of the TVM bundle the cell's run will load on ``device``
    (or one like it), or None when its run needs no TVM bundle (another engine or runner)."""
    from harness.benchmark import resolved_spec

    spec = cell.spec
    if spec.engine != "tvm":
        return None
    resolved = resolved_spec(spec, device)
    if resolved.runner != "python":
        return None
    return (resolved.model, resolved.quantization, resolved.target)


def _build(model: str, quantization: str, target: str, log) -> None:
    from harness.engines import get_engine
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    def quiet(_msg: str) -> None:  # the grid's log is the cells' own
        pass

    loaded = resolve_model(model, log=quiet)
    get_engine("tvm").build(loaded, get_preset(quantization), target, log=quiet)
    log(f"compile ahead: {model} {quantization} for {target} is ready")
