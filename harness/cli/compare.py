"""``slm-bench compare RUN_A RUN_B``: per-cell ratios, and a failing exit status on regressions.

RUN_A and RUN_B are each a run folder or a grid's output folder (all of its cells)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

RUN_DIR = click.Path(path_type=Path, exists=True, file_okay=False)
EXIT_REGRESSION = 1  # 2 stays "bad input" (UserError), as everywhere in slm-bench


@click.command(
    "compare",
    epilog="""\b
Examples:
  slm-bench compare results/before results/after                   # the table only
  slm-bench compare results/before results/after --fail-above 10   # CI: exit 1 if >10% slower
  slm-bench compare results/before results/after --json | jq '.[] | .otps_ratio'
  slm-bench compare results/grid-quick results/grid-quick-new      # two grids, every cell

\b
Exit status: 0 no cell slower than PCT (or no --fail-above), 1 some cell is, 2 bad input.""",
)
@click.argument("run_a", type=RUN_DIR)
@click.argument("run_b", type=RUN_DIR)
@click.option(
    "--fail-above",
    "fail_above",
    type=click.FloatRange(min=0),
    default=None,
    metavar="PCT",
    help=(
        "Exit 1 when any cell's ITPS, OTPS, TTFT or runtime is more than PCT percent slower in"
        " RUN_B."
    ),
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the compared cells as JSON (the table goes to stderr).",
)
def compare(run_a: Path, run_b: Path, fail_above: float | None, as_json: bool) -> None:
    """Compare RUN_B against RUN_A, cell by cell (model, quantization, engine, target, task, L).

    Each of RUN_A and RUN_B is a run folder or a grid's output folder (all of its cells are
    compared).

    Each metric's median in B is shown with its slowdown against A in percent; the
    slowdown reads the same for every metric (+100% = twice as slow, whether that is OTPS
    halving or TTFT doubling). Warm-ups and failed requests are left out.
    """
    from harness.report.compare import compare_runs, render_text

    comparison = compare_runs([run_a], [run_b])
    for problem in comparison.unreadable:  # as `slm-bench report` does: the rest is still compared
        click.echo(f"warning: skipped unreadable journal line in {problem}", err=True)
    click.echo(render_text(comparison, fail_above), err=as_json)
    if as_json:
        sys.stdout.write(comparison.cells.to_json(orient="records", indent=1) + "\n")
    if fail_above is None:
        return
    flagged = comparison.regressions(fail_above)
    if flagged.empty:
        click.echo(
            f"ok: no cell of {len(comparison.cells)} is more than {fail_above:g}% slower", err=True
        )
        return
    worst = flagged.sort_values("worst_slowdown_pct", ascending=False).iloc[0]
    click.echo(
        f"REGRESSION: {len(flagged)} of {len(comparison.cells)} cells more than {fail_above:g}%"
        f" slower; worst: {worst['model']} {worst['task']} L={worst['L']} {worst['worst_metric']}"
        f" {worst['worst_slowdown_pct']:+.1f}%",
        err=True,
    )
    sys.exit(EXIT_REGRESSION)
