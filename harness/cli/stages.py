"""``slm-bench stages``: list the installed plugin stages, or run one into a model directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.errors import UserError


def parse_sets(pairs: tuple[str, ...]) -> dict:
    """``key=value`` pairs, values read as YAML scalars (``steps=20`` is an int, ``lr=1e-3`` a
    float)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r} is not key=value; write it like --set steps=20")
        out[key.strip()] = _scalar(yaml.safe_load(value)) if value else ""
    return out


def _scalar(value):
    """YAML 1.1 reads ``1e-3`` as a string; a number is what anyone typing it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def read_config(path: str | None) -> dict:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(
            f"{path}: cannot read the stage config ({str(exc).splitlines()[0]}); pass a readable"
            " YAML mapping"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: a stage config must be a YAML mapping of settings, not a"
            f" {type(data).__name__}"
        )
    return data


@click.group(
    "stages",
    invoke_without_command=True,
    epilog="""\b
Examples:
  slm-bench stages                       # name, package, summary of every installed stage
  slm-bench stages --json
  slm-bench stages run slimlm --set preset=tiny --set pretrain_steps=50 --out build/slimlm
A package adds a stage with an entry point in the group slm_bench.stages.""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the stages as a JSON list.")
@click.pass_context
def stages(ctx, as_json):
    """List the installed plugin stages (entry points in the group slm_bench.stages)."""
    if ctx.invoked_subcommand is not None:
        return
    from harness.stages import list_stages

    rows = list_stages()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows], indent=1))
        return
    if not rows:
        click.echo("no stages installed; `pip install -e .` registers the built-in slimlm stage")
        return
    width = max(len(r.name) for r in rows)
    for r in rows:
        text = f"BROKEN: {r.error}" if r.error else r.summary
        click.echo(f"{r.name:<{width}}  {r.package:<22}  {text}")


@stages.command("run")
@click.argument("name")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML mapping of the stage's settings.",
)
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override one setting (repeatable)."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Where the stage writes its model directory.",
)
def run_stage(name, config_path, sets, out_dir):
    """Run the stage NAME; prints the model directory it produced."""
    from harness.stages import load_stage

    stage = load_stage(name)
    config = {**read_config(config_path), **parse_sets(sets)}
    model_dir = stage.run(config, Path(out_dir), log=lambda m: click.echo(m, err=True))
    click.echo(str(model_dir))
