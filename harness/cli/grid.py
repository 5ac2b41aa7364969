"""``slm-bench grid``: a model x quantization x device grid, one command to a trade-off report."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import csv_ints, csv_words

EPILOG = """\b
Examples:
  slm-bench grid examples/quick.yaml --dry-run     # cells, bundle sizes, memory, time estimate
  slm-bench grid examples/quick.yaml               # run it (resumable), then report + plots
  slm-bench grid examples/study-s24.yaml --dry-run # the study's efficiency table on a Galaxy S24
  slm-bench grid examples/study-s24.yaml --dry-run --strict-memory   # only cells within the budget
  slm-bench grid examples/lab.yaml --devices pool:galaxy-s24 \
      --adb-server 10.0.0.2:5037 --adb-server 10.0.0.3:5037   # every S24 of two hosts at once
  slm-bench grid examples/study-s24.yaml --devices adb:127.0.0.1:5600 --target llvm \
      --lengths 0,200 --repeats 1 --max-new-tokens 8   # every Table 1 model once, emulated S24

\b
Memory: each cell's estimate (packed weights + KV cache at the longest L + runtime) is judged
against the device's budget and total RAM. Over the budget it runs with a warning, flagged
over_budget in the journal and report; over the total RAM it is skipped. A real out-of-memory
(the runner killed by signal 9, lmkd in the log) is journaled as failed and the grid goes on.

\b
Exit status: 0 every cell measured (or skipped by the plan: memory); 2 bad input, nothing run;
3 some cell failed (journaled as failed and listed in the report; rerun to retry it)."""


@click.command("grid", epilog=EPILOG)
@click.argument("grid_file", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the cells' run dirs and the report [default: results/grid-<file name>/].",
)
@click.option("--dry-run", is_flag=True, help="Only print the plan.")
@click.option(
    "--devices",
    callback=csv_words,
    default=None,
    help=(
        "Override the file's devices (comma-separated): local, adb:SERIAL, adb:SERIAL@HOST:PORT,"
        " or pool:PROFILE (every reachable phone of that profile; a cell runs on whichever is"
        " free)."
    ),
)
@click.option(
    "--adb-server",
    "adb_servers",
    multiple=True,
    help=(
        "An adb server HOST:PORT to find phones on (repeat it for each host of a lab; each runs"
        " `adb -a nodaemon server`); overrides the file's adb_servers [default: 127.0.0.1:5037]."
    ),
)
@click.option(
    "--target",
    default=None,
    help="Override the file's compile target (e.g. llvm for the emulated x86 phone).",
)
@click.option(
    "--tasks", callback=csv_words, default=None, help="Override the file's tasks (comma-separated)."
)
@click.option(
    "--lengths",
    callback=csv_ints,
    default=None,
    help="Override the file's context lengths, e.g. 200,1000 (0: the question alone, qa only).",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    help="Override the file's measured requests per prompt.",
)
@click.option(
    "--threads",
    callback=csv_ints,
    default=None,
    help="Override the file's thread counts, e.g. 1,2,4 (a sweep in every cell).",
)
@click.option(
    "--cores",
    callback=csv_words,
    default=None,
    help="Override the file's core sets, e.g. little,prime+big (a sweep in every cell).",
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Override the file's output tokens per request.",
)
@click.option(
    "--strict-memory",
    is_flag=True,
    help=(
        "Skip cells whose memory estimate exceeds the device's budget (the profile's planning"
        " figure) instead of running them with a warning; cells over the device's total RAM are"
        " skipped either way."
    ),
)
def grid(
    grid_file,
    out,
    dry_run,
    devices,
    adb_servers,
    target,
    tasks,
    lengths,
    repeats,
    threads,
    cores,
    max_new_tokens,
    strict_memory,
):
    """Run every cell of GRID_FILE (YAML: models, quantizations, devices, lengths, tasks,
    repeats, ...).

    Options given on the command line override the file's fields of the same name, so one
    grid file serves a quick pass and the full measurement.
    """
    from harness.grid import estimate_seconds, load_grid, plan_grid, run_grid, with_overrides
    from harness.paths import results_dir

    overrides = {
        "devices": devices,
        "adb_servers": list(adb_servers) or None,
        "target": target,
        "tasks": tasks,
        "lengths": lengths,
        "repeats": repeats,
        "threads": threads,
        "cores": cores,
        "max_new_tokens": max_new_tokens,
    }
    spec = with_overrides(
        load_grid(grid_file), {k: v for k, v in overrides.items() if v is not None}, grid_file
    )
    if spec.reference is not None:
        from harness.report.reference import check_reference

        # before any cell runs, dry run or not
        check_reference(spec.reference, where=str(grid_file))
    out_dir = Path(out) if out else results_dir() / f"grid-{Path(grid_file).stem}"
    if dry_run:
        cells = plan_grid(spec, strict_memory)
        click.echo(
            f"{'model':<26} {'quant':<8} {'engine':<9} {'device':<20} {'params':>7} {'weights':<7}"
            f" {'bundle':>8} {'memory':>8} {'budget':>8}  plan"
        )
        total, unknown, estimates = 0.0, 0, {}
        for c in cells:
            mb = lambda b: f"{b / 1e6:.0f}MB" if b else "?"  # noqa: E731
            secs = None if c.skip_reason else estimate_seconds(c, results_dir())
            estimates[id(c)] = secs
            if not c.skip_reason:
                total, unknown = total + (secs or 0), unknown + (secs is None)
            plan = (
                f"skip: {c.skip_reason}"
                if c.skip_reason
                else (
                    f"run, ~{secs / 60:.1f} min"
                    if secs
                    else "run, no earlier results to estimate from"
                )
            )
            if c.over_budget and not c.skip_reason:
                plan += ", OVER BUDGET"
            params = f"{c.params / 1e6:.0f}M" if c.params else "?"
            click.echo(
                f"{c.spec.model:<26} {c.spec.quantization:<8} {c.spec.engine:<9}"
                f" {c.spec.device:<20} {params:>7} {c.weights:<7} {mb(c.bundle_bytes):>8}"
                f" {mb(c.memory_estimate):>8} {mb(c.budget):>8}  {plan}"
            )
        click.echo(
            f"{len(cells)} cells, {sum(1 for c in cells if c.skip_reason)} skipped; estimated"
            f" {total / 60:.1f} min"
            + (f" plus {unknown} cell(s) without earlier results" if unknown else "")
        )
        from harness.grid_view import plan_entries, schedule_lines

        # which cells run at once (device entries in parallel, a pool's members too)
        for line in schedule_lines(plan_entries(spec, cells, estimates)):
            click.echo(line)
        for c in cells:
            if c.memory_warning:
                click.echo(
                    f"warning: {c.spec.model} {c.spec.quantization} on {c.spec.device}:"
                    f" {c.memory_warning}",
                    err=True,
                )
        if spec.threads or spec.cores:
            settings = len(spec.threads or [0]) * len(spec.cores or [""])
            click.echo(
                f"placement: each cell sweeps threads {spec.threads or 'one per core'} x cores"
                f" {spec.cores or 'the device default'} ({settings} settings, each its own runner;"
                " the estimate counts them)"
            )
        if spec.quality is not None:
            q = spec.quality
            click.echo(
                f"quality: each real-weights cell is then scored (on its engine) on {q.docassist}"
                f" ({q.split} split{f', first {q.limit} examples' if q.limit else ''}; not timed"
                " above)"
            )
        if spec.reference is not None:
            click.echo(
                f"reference: the report sets the published {spec.reference} figures beside the"
                " measured ones"
            )
        return
    from harness.grid_view import GridView

    # a live table of the cells on a terminal (the log lines above it); a summary line at the end
    with GridView() as view:
        run_dirs = run_grid(spec, out_dir, log=view.log, strict_memory=strict_memory, view=view)
    from harness.report.render import write_report

    title = f"slm-bench grid: {Path(grid_file).stem}"
    outputs = write_report(run_dirs, out_dir / "report", title=title, reference=spec.reference)
    click.echo(f"report: {outputs.html}")
    if run_dirs.failed:
        from harness.grid import EXIT_CELLS_FAILED

        click.echo(
            f"error: {run_dirs.failed} cell(s) failed (see the report's Problems); exit status"
            f" {EXIT_CELLS_FAILED}; rerun the same command to retry them",
            err=True,
        )
        raise SystemExit(EXIT_CELLS_FAILED)
