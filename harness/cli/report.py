"""``slm-bench report`` and ``slm-bench plot``: render run directories (or a grid's output folder).

pandas and matplotlib are imported inside the commands, so listing or getting help for
these commands stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

RUN_DIR = click.Path(path_type=Path, exists=True, file_okay=False)


@click.command(
    epilog="""\b
Examples:
  slm-bench report results/qwen-q4-pixel8
      -> reports/qwen-q4-pixel8/{report.md, report.html, summary.csv, plots/}
  slm-bench report results/a results/b results/c           # one report, three runs
  slm-bench report results/grid-quick                      # a grid's folder: all of its cells
  slm-bench report results/new --baseline results/old      # value (ratio to old) per cell
  slm-bench report results/run --json | jq '.[0]'          # summary rows as JSON"""
)
@click.argument("run_dirs", nargs=-1, required=True, type=RUN_DIR)
@click.option(
    "--baseline",
    type=RUN_DIR,
    default=None,
    help=(
        "Run dir (or grid folder) to compare against; cells match on model, quantization, task"
        " and L."
    ),
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output folder [default: reports/<run name>, or reports/compare-<n> for several runs].",
)
@click.option(
    "--L",
    "length",
    type=int,
    default=None,
    help="Context length of the trade-off plots [default: largest common L].",
)
@click.option(
    "--reference",
    default=None,
    metavar="NAME",
    help="Overlay published figures: slimlm-s24 (the SlimLM paper's Galaxy S24 table).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the summary rows as JSON on stdout (messages go to stderr).",
)
def report(
    run_dirs: tuple[Path, ...],
    baseline: Path | None,
    out: Path | None,
    length: int | None,
    reference: str | None,
    as_json: bool,
) -> None:
    """Render report.md, a self-contained report.html, summary.csv and plots.

    RUN_DIRS are run folders or grid output folders (`slm-bench grid`), whose cells are all
    reported. Statistics (median, p10, p90, stdev, cv, count) use measured requests only: warmups,
    failed and skipped cells are left out and listed. Unreadable journal lines are
    reported at the top, with file and line, and everything else is still used.
    """
    from harness.report.render import write_report

    outputs = write_report(list(run_dirs), out, baseline=baseline, L=length, reference=reference)
    for problem in outputs.unreadable:  # on the console too, not only inside report.md
        click.echo(f"warning: skipped unreadable journal line {problem}", err=True)
    for path in (outputs.markdown, outputs.html, outputs.csv, outputs.units_csv):
        if path is not None:
            click.echo(f"wrote {path}", err=as_json)
    click.echo(f"wrote {len(outputs.plots)} plot files to {outputs.out_dir / 'plots'}", err=as_json)
    if as_json:
        click.echo(outputs.summary.to_json(orient="records", indent=2))


@click.command(
    epilog="""\b
Examples:
  slm-bench plot results/a results/b            # -> reports/compare-2/plots/
  slm-bench plot results/grid-quick             # every cell of a grid -> reports/grid-quick/plots/
  slm-bench plot results/a --L 600 --out /tmp/plots"""
)
@click.argument("run_dirs", nargs=-1, required=True, type=RUN_DIR)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output folder [default: reports/<run name>/plots].",
)
@click.option(
    "--L",
    "length",
    type=int,
    default=None,
    help="Context length of the trade-off and memory plots [default: largest common L].",
)
def plot(run_dirs: tuple[Path, ...], out: Path | None, length: int | None) -> None:
    """Draw the plots (PNG + SVG) of run folders or grid folders: speed vs L, size/speed
    trade-off, peak memory, OTPS and TTFT heat maps over model x L, and quality vs OTPS (from
    `slm-bench eval` results in the runs).

    Lines are medians with a p10-p90 band; hollow markers mean dummy weights. The OTPS
    plot shows a decode ceiling (bandwidth / weight bytes) when run.json has both.
    """
    from harness.report.plots import write_plots
    from harness.report.render import default_out_dir

    folder = out if out is not None else default_out_dir(list(run_dirs)) / "plots"
    written = write_plots(list(run_dirs), folder, L=length)
    for path in written:
        click.echo(f"wrote {path}")
