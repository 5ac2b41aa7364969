"""Model grids: models x quantizations x devices, each cell one benchmark run, one report.

A grid file (YAML, validated) names what to measure; ``plan_grid`` expands it into cells with a
memory estimate each, judged by ``harness.memory``: a cell over the device's budget runs flagged
``over_budget``, one over the device's total RAM (or over budget with ``strict_memory``) is
journaled as ``skipped`` with the reason; ``run_grid`` measures the rest, cell after cell (a
device keeps one model loaded at a time), resuming like any run; a cell that fails (out of
memory, a runner error) is journaled as ``failed`` and the grid goes on with the next.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UserError
from harness.memory import device_memory, estimate_memory, plan_memory
from harness.results.schema import DeviceInfo, RunSpec, Task
from harness.yamlfile import load_validated


class GridQuality(BaseModel):
    """Score every real-weights cell (on its engine) with ``slm-bench eval`` after its speed
    run (quality.jsonl in its run dir)."""

    model_config = ConfigDict(extra="forbid")

    docassist: Path  # a folder written by `slm-bench docassist build`; relative to the grid file
    split: Literal["train", "validation", "test"] = "test"
    limit: int | None = Field(default=None, ge=1)  # first N task examples of the split
    max_new_tokens: int = Field(default=256, ge=1)


class GridSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(min_length=1)
    quantizations: list[str] = ["q4f16_1"]
    # llama.cpp side by side needs the llamacpp extra
    engines: list[Literal["tvm", "llama.cpp"]] = ["tvm"]
    devices: list[str] = ["local"]
    target: str = "llvm"
    tasks: list[Task] = ["summ", "qs", "qa"]
    lengths: list[int] = [200, 400, 600, 800, 1000]
    # a sweep inside every cell, like lengths (harness.devices.placement)
    threads: list[int] | None = None
    # core sets: all, a cluster, prime+big, 4-9; None: the device's default
    cores: list[str] | None = None
    # idle fuel-gauge sampling before each cell (phones), for energy above idle
    idle_s: float = Field(default=10.0, ge=0)
    repeats: int = Field(default=5, ge=1)
    warmup: int = Field(default=1, ge=0)
    max_new_tokens: int = Field(default=128, ge=1)
    cooldown_s: float = 0.0
    max_temp_c: float | None = None
    docs: int = Field(default=1, ge=1)
    adb_server: str | None = None
    # more adb servers (HOST:PORT, one per host of a phone lab): pools span all of them
    adb_servers: list[str] = []
    # plan phones with this device profile when they cannot be reached (dry runs)
    profile: str | None = None
    quality: GridQuality | None = None
    reference: str | None = None  # overlay published figures in the report, e.g. slimlm-s24

    @property
    def servers(self) -> list[str]:
        """Every adb server the grid names (none: the local one)."""
        return list(
            dict.fromkeys([*self.adb_servers, *([self.adb_server] if self.adb_server else [])])
        )


def load_grid(path: str | Path) -> GridSpec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"grid file {path} not found; see examples/quick.yaml")
    grid = load_validated(path, GridSpec, "fix the grid file", "see examples/quick.yaml")
    if grid.quality is not None and not grid.quality.docassist.is_absolute():
        # Relative to the grid file where it is there (a grid then runs from any directory),
        # else to the current directory.
        beside = path.parent / grid.quality.docassist
        if beside.is_dir():
            grid.quality.docassist = beside
    return grid


def with_overrides(grid: GridSpec, overrides: dict, source) -> GridSpec:
    """The grid with command-line values in place of its own, validated like the file."""
    if not overrides:
        return grid
    try:
        return GridSpec.model_validate({**grid.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(
            f"{source}: override {'.'.join(str(x) for x in first['loc'])}: {first['msg']}; fix the"
            " command-line option"
        ) from None


@dataclass
class Cell:
    spec: RunSpec
    params: int | None
    weights: str
    bundle_bytes: int | None
    memory_estimate: int | None
    budget: int | None
    skip_reason: str | None = None
    total_ram: int | None = None  # the device's RAM, where known
    # runs anyway (only --strict-memory skips it); flagged in the journal and report
    over_budget: bool = False
    memory_warning: str | None = None  # the dry run's line for an over-budget cell
    title: str = ""  # "cell 3: model quantization", as the grid's log names it


def plan_grid(grid: GridSpec, strict_memory: bool = False) -> list[Cell]:
    """Every cell, ordered device by device (a device keeps one model loaded at a time).

    ``strict_memory`` skips cells over the device's memory budget; without it they are planned
    to run, flagged ``over_budget``, and only cells over the device's total RAM are skipped."""
    from harness.models.catalog import load_catalog, packed_bytes
    from harness.quantization import get_preset

    catalog = load_catalog()
    cells = []
    for device in grid.devices:
        memory = device_memory(device, grid.adb_server, grid.profile)
        for model in grid.models:
            for quant, engine in ((q, e) for q in grid.quantizations for e in grid.engines):
                preset = get_preset(quant)
                spec = RunSpec(
                    model=model,
                    quantization=quant,
                    engine=engine,
                    target=grid.target,
                    device=device,
                    tasks=grid.tasks,
                    lengths=grid.lengths,
                    repeats=grid.repeats,
                    warmup=grid.warmup,
                    max_new_tokens=grid.max_new_tokens,
                    cooldown_s=grid.cooldown_s,
                    max_temp_c=grid.max_temp_c,
                    docs=grid.docs,
                    threads=grid.threads,
                    cores=grid.cores,
                    idle_s=grid.idle_s,
                )
                entry = catalog.get(model)
                # a file or directory: known only once loaded (the run plans it then)
                if entry is None:
                    cells.append(
                        Cell(
                            spec,
                            None,
                            "dummy" if model.startswith("dummy:") else "real",
                            None,
                            None,
                            memory.budget,
                            total_ram=memory.total,
                        )
                    )
                    continue
                # prompts are ~1.25x their cl100k L in model tokens (chat template, instructions)
                tokens = int(max(grid.lengths) * 1.3) + grid.max_new_tokens
                estimate = estimate_memory(entry.config, preset, tokens)
                cell = Cell(
                    spec,
                    entry.config.param_count(),
                    "real" if entry.weights == "builtin" else "dummy",
                    packed_bytes(entry.config, preset),
                    estimate,
                    memory.budget,
                    total_ram=memory.total,
                )
                if not entry.supported:
                    cell.skip_reason = (
                        f"architecture {entry.config.arch} is not supported by the engine yet"
                    )
                else:
                    plan = plan_memory(
                        estimate,
                        memory.budget,
                        memory.total,
                        strict_memory,
                        f"weights + KV cache at L={max(grid.lengths)} + runtime",
                    )
                    cell.over_budget, cell.skip_reason, cell.memory_warning = (
                        plan.over_budget,
                        plan.skip_reason,
                        plan.warning(),
                    )
                cells.append(cell)
    return cells


def estimate_seconds(cell: Cell, results_root: Path) -> float | None:
    """From earlier runs of the same model, quantization
    and device: median runtime per L x requests."""
    per_L: dict[int, list[float]] = {}
    # run folders, and the cells inside grid folders (results/grid-NAME/RUN)
    for records in results_root.rglob("records.jsonl"):
        for line in records.read_text(errors="replace").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            same_build = (
                r.get("model") == cell.spec.model
                and r.get("quantization") == cell.spec.quantization
                and r.get("engine", "tvm") == cell.spec.engine
            )
            if same_build and r.get("status") == "ok" and r.get("runtime_s"):
                per_L.setdefault(r["L"], []).append(r["runtime_s"])
    if not all(L in per_L for L in cell.spec.lengths):
        return None
    prompts = (
        len(cell.spec.tasks)
        * cell.spec.docs
        * len(cell.spec.threads or [0])
        * len(cell.spec.cores or [""])
    )
    return sum(
        median(per_L[L]) * prompts * (cell.spec.repeats + cell.spec.warmup)
        for L in cell.spec.lengths
    )


class RunDirs(list):
    """The cells' run dirs, in plan order, and how many cells failed (``failed``)."""

    failed: int = 0


# `slm-bench grid` exits with this when a cell failed (journaled; a rerun retries it): distinct
# from 0 (every cell measured or skipped by the plan) and 2 (bad input, nothing run), so a lab's
# CI notices a grid that lost cells.
EXIT_CELLS_FAILED = 3


def run_grid(
    grid: GridSpec, out_dir: Path, log=print, strict_memory: bool = False, view=None
) -> RunDirs:
    """Run every cell into ``out_dir/<run-id>``, every device busy at once (``harness.schedule``):
    one cell at a time per device, a pool's cells on whichever member is free. Skipped cells are
    journaled as such; a cell that fails is journaled as failed while the grid goes on (Ctrl-C
    still stops it), and one whose device disappears is retried once on another pool member.
    Returns the run dirs, in plan order. ``view`` (``harness.grid_view``) is told when each cell
    starts and ends, on which device."""
    from harness import compile_ahead
    from harness.benchmark import run_id_for
    from harness.engines import engine_code_hash
    from harness.schedule import Job, Outcome, Scheduler

    cells = plan_grid(grid, strict_memory)
    run_dirs = RunDirs(out_dir / run_id_for(cell.spec) for cell in cells)
    members = grid_members(grid, [c for c in cells if not c.skip_reason])
    jobs = []
    for i, (cell, run_dir) in enumerate(zip(cells, run_dirs, strict=True), start=1):
        engine = "" if cell.spec.engine == "tvm" else f" [{cell.spec.engine}]"
        cell.title = f"cell {i}: {cell.spec.model} {cell.spec.quantization}{engine}"
        if cell.skip_reason:
            log(f"{cell.title} on {cell.spec.device}")
            _journal_cell(cell, run_dir, "skipped", cell.skip_reason)
            log(f"  skipped: {cell.skip_reason}")
        else:
            jobs.append(Job((cell, run_dir), members[cell.spec.device]))
    devices = list(dict.fromkeys(d for job in jobs for d in job.members))
    if len(devices) > 1:
        log(f"{len(jobs)} cells on {len(devices)} devices at once: {', '.join(devices)}")
    if view is not None and hasattr(view, "planned"):  # every cell, before any starts
        view.planned(cells, devices)
    runnable = [c for c in cells if not c.skip_reason]
    # Bundle keys fingerprint the engine's code by parsing it; parsing in several threads at once
    # can trip CPython 3.11's ast module (harness.cache._AST_LOCK), so it is done once, here.
    for engine in dict.fromkeys(c.spec.engine for c in runnable):
        engine_code_hash(engine)
    stop_compiling = compile_ahead.start(runnable, members, grid.adb_server, log)
    lock = threading.Lock()

    def run(job, device: str):
        cell, run_dir = job.cell
        say = _device_log(log, device if len(devices) > 1 else None)
        if view is not None:
            view.started(cell, device)
        outcome = _run_cell(grid, cell, run_dir, device, say, strict_memory)
        if view is not None:
            view.finished(cell, device, outcome or "done")
        if outcome == "failed":  # journaled with its reason; a lost device's cell may be retried
            with lock:
                run_dirs.failed += 1
        return Outcome.DEVICE_LOST if outcome == "lost" else Outcome.DONE

    def give_up(job, reason: str) -> None:
        cell, run_dir = job.cell
        _journal_cell(cell, run_dir, "failed", reason)
        log(f"{cell.title}: failed: {reason}")
        if view is not None:
            view.finished(cell, None, "failed")
        with lock:
            run_dirs.failed += 1

    try:
        Scheduler(jobs, run, give_up).run()
    finally:
        if stop_compiling is not None:
            stop_compiling()
    if run_dirs.failed:
        log(
            f"{run_dirs.failed} cell(s) failed (journaled as failed, listed in the report); rerun"
            " the same command to retry them"
        )
    return run_dirs


def grid_members(grid: GridSpec, cells: list[Cell]) -> dict[str, list[str]]:
    """Each device entry of the cells -> the devices that may run its cells: itself, or every
    reachable member of a pool (found once, on every adb server of the grid)."""
    from harness.devices.lab import expand_pool, is_pool

    members: dict[str, list[str]] = {}
    for device in dict.fromkeys(c.spec.device for c in cells):
        members[device] = expand_pool(device, grid.servers) if is_pool(device) else [device]
    return members


def _device_log(log, device: str | None):
    if device is None:
        return lambda msg: log(f"  {msg}")
    return lambda msg: log(f"  [{device}] {msg}")


def _run_cell(grid, cell, run_dir: Path, device: str, log, strict_memory: bool) -> str | None:
    """Measure one cell on ``device``: None when measured, "failed" (journaled with its reason)
    or "lost" (the device left: journaled nothing, the scheduler may retry it elsewhere)."""
    from harness.benchmark import run_benchmark

    where = "" if device == cell.spec.device else f" ({cell.spec.device})"
    log(f"{cell.title} on {device}{where}")
    # an over-budget cell is said once, by its run (its estimate counts the real prompts)
    _forget_earlier_skip(run_dir, log)
    try:
        run_benchmark(
            cell.spec,
            run_dir,
            log=log,
            write_reports=False,
            adb_server=grid.adb_server,
            strict_memory=strict_memory,
            member=device if device != cell.spec.device else None,
        )
    except Exception as exc:
        # one cell's failure must not cost the cells after it; KeyboardInterrupt is no Exception
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        if not device_reachable(device, grid.adb_server):
            log(f"failed: {device} is gone ({reason})")
            return "lost"
        _journal_cell(cell, run_dir, "failed", reason, device)
        log(f"failed: {reason}")
        return "failed"
    if grid.quality is not None:
        evaluate_cell(cell, grid.quality, run_dir, log=log)
    return None


def device_reachable(device: str, adb_server: str | None) -> bool:
    """Whether the device still answers: a phone on its adb server's list, online. The desktop
    always does."""
    from harness.devices.lab import DEFAULT_SERVER, online_serials, parse_device

    parsed = parse_device(device)
    if parsed.kind == "local":
        return True
    try:
        serials = online_serials(parsed.server or adb_server or DEFAULT_SERVER)
    except UserError:
        return False
    return parsed.serial is None or parsed.serial in serials


def evaluate_cell(cell: Cell, quality: GridQuality, run_dir: Path, log=print) -> None:
    """``slm-bench eval`` of the cell's model into its run dir, once (a rerun keeps the result).

    Quality is never computed for dummy weights: their output means nothing."""
    from harness.eval.evaluate import QUALITY_FILE

    if (run_dir / QUALITY_FILE).is_file():
        log(f"quality: already in {run_dir / QUALITY_FILE}")
        return
    from harness.engines import get_engine
    from harness.eval.evaluate import evaluate, examples_for, write_results
    from harness.eval.generate import BundleGenerator
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset
    from harness.results.journal import read_run_info

    if cell.weights == "dummy":  # known when planning, without loading anything
        log("quality: not computed (dummy weights have no meaningful output)")
        return
    model = resolve_model(cell.spec.model, log=log)
    # The host's build of the cell's engine: quality does not depend on where speed was measured.
    bundle = get_engine(cell.spec.engine).build(
        model, get_preset(cell.spec.quantization), "llvm", log=log
    )
    examples = examples_for(quality.docassist, quality.split, quality.limit)
    info = read_run_info(run_dir)
    records, rows = evaluate(
        BundleGenerator(bundle, max_new_tokens=quality.max_new_tokens).generate,
        examples,
        model=cell.spec.model,
        quantization=cell.spec.quantization,
        dataset=quality.docassist,
        split=quality.split,
        run_id=info.run_id if info else "",
        engine=cell.spec.engine,
    )
    write_results(run_dir, records, rows)
    log(
        f"quality: {len(rows)} examples scored, avg score"
        f" {sum(r.avg_score or 0 for r in records) / max(len(records), 1):.3f}"
    )


def _forget_earlier_skip(run_dir: Path, log) -> None:
    """A cell an earlier plan skipped (over budget when budgets still skipped, or under
    --strict-memory) that now runs: its journal holds no measurement, only skipped records that
    would count as done. They are removed so the cell is measured."""
    from harness.results.journal import RECORDS_FILE, RUN_FILE, load, read_run_info

    info = read_run_info(run_dir)
    if info is None or not getattr(info, "skipped", None):
        return
    records, problems = load(run_dir)
    if problems or any(r.status != "skipped" for r in records):
        return  # something else is in there: leave it to the spec check of the run
    (run_dir / RECORDS_FILE).unlink(missing_ok=True)
    (run_dir / RUN_FILE).unlink()
    log(f"  an earlier plan skipped this cell ({info.skipped}); it runs now")


def _journal_cell(
    cell: Cell, run_dir: Path, status: str, reason: str, device: str | None = None
) -> None:
    """One ``status`` record (skipped or failed) per request of the cell that has none yet.

    A skipped cell also gets its run.json (nothing else will write one). A failed cell does not:
    its run, when retried, writes the run.json of the spec it really ran (runner and target as
    the device resolved them), which one written here could contradict."""
    from harness.benchmark import run_id_for
    from harness.prompts.suite import load_suite, select
    from harness.results.journal import DONE_STATUSES, Journal
    from harness.results.schema import Record, RunInfo

    prompts = select(load_suite(), cell.spec.tasks, cell.spec.lengths, cell.spec.docs)
    run_id = run_id_for(cell.spec)
    journal = Journal(run_dir)
    existing = journal.read_run_info()
    # never over a run's own run.json
    if status == "skipped" and (existing is None or getattr(existing, "skipped", None)):
        journal.write_run_info(
            RunInfo(
                run_id=run_id,
                spec=cell.spec,
                prompt_set=prompts[0].prompt_set,
                prompt_set_hash=prompts[0].prompt_set_hash,
                skipped=cell.skip_reason,
                memory_estimate_bytes=cell.memory_estimate,
                memory_budget_bytes=cell.budget,
                memory_total_bytes=cell.total_ram,
                over_budget=cell.over_budget,
            )
        )
    # By prompt and repeat: the run's own records name the device by its serial, which a cell
    # planned for "adb" (the only attached phone) does not know. A failure already journaled
    # with this reason (the request that ran out of memory) is not written twice.
    records, _ = journal.load()
    have = {
        (r.prompt_id, r.repeat)
        for r in records
        if not r.warmup and (r.status in DONE_STATUSES or (r.status, r.error) == (status, reason))
    }
    for p in prompts:
        for repeat in range(cell.spec.repeats):
            record = Record(
                model=cell.spec.model,
                params=cell.params,
                device=DeviceInfo(serial=(device or cell.spec.device).removeprefix("adb:")),
                weights=cell.weights,
                quantization=cell.spec.quantization,
                engine=cell.spec.engine,
                target=cell.spec.target,
                prompt_set=p.prompt_set,
                prompt_id=p.id,
                task=p.task,
                L=p.L,
                repeat=repeat,
                status=status,
                error=reason,
                run_id=run_id,
                memory_estimate_bytes=cell.memory_estimate,
                over_budget=cell.over_budget,
            )
            if (p.id, repeat) not in have:
                journal.append(record)
