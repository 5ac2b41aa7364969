"""``slm-bench models``: the model catalog, with parameter counts computed from the configs."""

from __future__ import annotations

import json

import click


@click.command(
    "models",
    epilog="""\b
Examples:
  slm-bench models
  slm-bench models --json | jq '.[] | select(.supported) | .name'
  # dummy weights, speed only
  slm-bench run --model qwen2-0.5b-instruct --lengths 200 --repeats 1""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as a JSON list.")
def models(as_json):
    """List the catalog: parameters (computed, and checked against the published count),
    architecture, whether the engine supports it, which weights are at hand, and the packed bytes
    per preset."""
    from harness.models.catalog import describe, load_catalog

    rows = sorted((describe(e) for e in load_catalog().values()), key=lambda r: r["params"])
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(
        f"{'name':<26} {'params':>8} {'check':>6} {'arch':<7} {'supported':<9} {'weights':<7}"
        f" {'q4f16_1':>9} {'q0f32':>9}"
    )
    for r in rows:
        # ~: within 3% of a nominal size
        check = ("ok" if r["published_exact"] else "~ok") if r["params_match"] else "DIFF"
        click.echo(
            f"{r['name']:<26} {r['params'] / 1e6:>7.0f}M {check:>6} {r['arch']:<7}"
            f" {'yes' if r['supported'] else 'no':<9} {r['weights']:<7}"
            f" {r['bytes']['q4f16_1'] / 1e6:>7.0f}MB {r['bytes']['q0f32'] / 1e6:>7.0f}MB"
        )
