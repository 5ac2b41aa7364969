"""``slm-bench cache``: what the cache holds, and pruning what the current code would not use."""

from __future__ import annotations

import json

import click

from harness.errors import UserError

STATES = """\b
States:
  current   the current code would use it (a kit whose key it computes, a bundle built by
            today's engine code and version)
  stale     no current code would: built from other code, flags, compiler or versions
  unknown   its current key cannot be computed here (e.g. no cross compiler)
  partial   an unfinished build folder (killed, or running without a lock)
  building  its build lock is held: never pruned
  data      downloaded or measured, not built by code (weights, gguf-meta, runners, ...)
  locks     the device locks: never pruned"""


def _age(ctx, param, value):
    if value is None:
        return None
    from harness.cache_inventory import parse_age

    try:
        return parse_age(value)
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(
    "cache",
    invoke_without_command=True,
    epilog=f"""\b
Examples:
  slm-bench cache                          # one row per entry, a total per kind
  slm-bench cache --json | jq '.entries[] | select(.state == "stale") | .name'
  slm-bench cache prune --dry-run          # what would go, and the space it frees
  slm-bench cache prune --older-than 30d   # also anything unused for 30 days
\b
The cache is $SLM_BENCH_CACHE (default ~/.cache/slm-bench). Last use is an entry's mtime:
kits, bundles and weights are touched each time they are used from the cache.
{STATES}""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON, for scripts.")
@click.pass_context
def cache(ctx, as_json):
    """List the cache: kits, bundles, weights and the rest, with size, last use and state.

    A kit's or bundle's state says whether this checkout's code would still use it: kits are
    keyed by what shapes their build (source hash, flags, compiler, the build recipe's code),
    bundles by the model and the engine's code, so other code leaves stale ones behind.
    """
    if ctx.invoked_subcommand is not None:
        return
    from harness.cache import cache_dir
    from harness.cache_inventory import format_table, scan

    entries = scan()
    if as_json:
        totals: dict[str, int] = {}
        for e in entries:
            totals[e.kind] = totals.get(e.kind, 0) + e.bytes
        doc = {
            "root": str(cache_dir()),
            "entries": [e.as_json() for e in entries],
            "totals": totals,
        }
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(format_table(entries, cache_dir()))


@cache.command(
    "prune",
    short_help="Remove stale kits and bundles; with --older-than, anything unused that long.",
    epilog=f"""\b
Examples:
  slm-bench cache prune --dry-run                  # list what would go; remove nothing
  slm-bench cache prune                            # stale entries unused for a day
  slm-bench cache prune --keep-recent 0            # ... however recently used
  slm-bench cache prune --older-than 30d           # ... and anything unused for 30 days
  slm-bench cache prune --no-stale --older-than 2w # only by age
{STATES}""",
)
@click.option("--dry-run", is_flag=True, help="Show what would be removed and the space freed.")
@click.option(
    "--stale/--no-stale",
    default=True,
    show_default=True,
    help="Remove stale entries and abandoned partial builds.",
)
@click.option(
    "--older-than",
    callback=_age,
    metavar="AGE",
    help="Also remove any entry (weights too) unused for AGE: 30d, 12h, 2w.",
)
@click.option(
    "--keep-recent",
    default="1d",
    show_default=True,
    callback=_age,
    metavar="AGE",
    help="Keep stale and partial entries used within AGE: another checkout (a branch, a "
    "worktree) sharing the cache may use what this code calls stale, and a partial one may be "
    "a build in progress.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was (or would be) removed.")
def prune(dry_run, stale, older_than, keep_recent, as_json):
    """Remove what the current code would not use, or what has not been used for a while.

    Stale kits and bundles, and abandoned partial builds, go once unused for --keep-recent;
    with --older-than anything unused for that long goes too. An entry whose build lock is held
    is never removed, nor are the device locks. Each entry is renamed aside before it is
    deleted, so no run sees half of one.
    """
    from harness.cache_inventory import human_bytes, plan_prune, scan
    from harness.cache_inventory import prune as remove

    if not stale and older_than is None:
        raise click.UsageError("nothing to prune by: drop --no-stale or give --older-than")
    removals = plan_prune(scan(), stale=stale, older_than=older_than, keep_recent=keep_recent)
    planned = sum(r.entry.bytes for r in removals)
    freed = planned if dry_run else remove(removals)
    if as_json:
        rows = [{**r.entry.as_json(), "reason": r.reason} for r in removals]
        click.echo(
            json.dumps({"dry_run": dry_run, "removed": rows, "freed_bytes": freed}, indent=1)
        )
        return
    if not removals:
        click.echo("nothing to prune")
        return
    width = max(len(r.entry.name) for r in removals)
    for r in removals:
        click.echo(f"  {r.entry.name:<{width}}  {human_bytes(r.entry.bytes):>9}  {r.reason}")
    verb = "would free" if dry_run else "freed"
    click.echo(f"{len(removals)} entries, {verb} {human_bytes(freed)}")
