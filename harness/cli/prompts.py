"""``slm-bench prompts``: build and inspect the DocAssist prompt suite."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.errors import UserError

PATH = click.Path(path_type=Path)


@click.group(
    epilog="""\b
Examples:
  slm-bench prompts build                      # prompts/corpus -> prompts/docassist-v1.jsonl
  slm-bench prompts show --doc d01             # list d01's 15 prompts
  slm-bench prompts show --doc d01 --task qa --L 400   # print one prompt in full
  slm-bench prompts show --task summ --L 200 --json    # JSON lines, for scripts"""
)
def prompts() -> None:
    """Build and inspect the DocAssist prompt suite.

    Each corpus document's first 1000 cl100k tokens are cut into 5 chunks of 200; context k
    is the first k chunks (L = 200k tokens) and is asked 3 tasks: summ, qs, qa. The built
    suite is committed, so every run measures byte-identical prompts.
    """


@prompts.command(
    epilog="""\b
Examples:
  slm-bench prompts build
  slm-bench prompts build --corpus my_docs/ --out /tmp/suite/"""
)
@click.option(
    "--corpus",
    type=PATH,
    default=None,
    help="Folder of *.md documents [default: <repo>/prompts/corpus].",
)
@click.option(
    "--templates",
    type=PATH,
    default=None,
    help="Task templates [default: <repo>/prompts/templates.yaml].",
)
@click.option(
    "--out",
    type=PATH,
    default=None,
    help="Where to write docassist-v1.jsonl [default: <repo>/prompts].",
)
def build(corpus: Path | None, templates: Path | None, out: Path | None) -> None:
    """Tokenize the corpus into the prompt suite (.jsonl + .meta.json).

    Fails, naming the file, on a document with bad front matter or fewer than 1000 tokens.
    Rebuild after editing the corpus or the templates; the prompt-set hash changes.
    """
    from harness.prompts.suite import build_suite, write_suite

    records = build_suite(corpus, templates)
    jsonl, meta = write_suite(records, out)
    _print_build_table(records)
    click.echo(f"wrote {len(records)} prompts to {jsonl}")
    click.echo(f"wrote {meta} (hash {records[0].prompt_set_hash[:16]}…)")


def _print_build_table(records) -> None:
    """Docs x L, each cell the recorded (re-encoded) context token count."""
    from rich.console import Console
    from rich.table import Table

    lengths = sorted({r.L for r in records})
    table = Table(title=f"{records[0].prompt_set}: context tokens (cl100k) per document and L")
    table.add_column("doc")
    for length in lengths:
        table.add_column(f"L={length}", justify="right")
    table.add_column("prompts", justify="right")
    for doc_id in dict.fromkeys(r.doc_id for r in records):
        mine = [r for r in records if r.doc_id == doc_id]
        tokens = {r.L: r.context_tokens for r in mine}
        table.add_row(doc_id, *(str(tokens.get(length, "-")) for length in lengths), str(len(mine)))
    Console().print(table)


@prompts.command(
    epilog="""\b
Examples:
  slm-bench prompts show                        # list every prompt
  slm-bench prompts show --doc d03 --task qa --L 1000
  slm-bench prompts show --L 200 --L 400 --task summ --json"""
)
@click.option(
    "--task",
    "tasks",
    multiple=True,
    type=click.Choice(["summ", "qs", "qa"]),
    help="Only this task (repeatable).",
)
@click.option(
    "--L",
    "lengths",
    multiple=True,
    type=int,
    help="Only this context length, e.g. 200; 0 is the question alone (repeatable).",
)
@click.option("--doc", "docs", multiple=True, help="Only this document id, e.g. d01 (repeatable).")
@click.option(
    "--suite",
    type=PATH,
    default=None,
    help="A built suite (.jsonl or its folder) [default: <repo>/prompts].",
)
@click.option(
    "--text", "full_text", is_flag=True, help="Print the full text of every selected prompt."
)
@click.option("--json", "as_json", is_flag=True, help="Print the selected prompts as JSON lines.")
def show(tasks, lengths, docs, suite, full_text: bool, as_json: bool) -> None:
    """Show prompts of the built suite.

    One selected prompt is printed in full; several are listed (add --text for all texts).
    """
    from harness.prompts.suite import load_suite, select

    selected = select(load_suite(suite), tasks or None, lengths or None, list(docs) or None)
    if not selected:
        raise UserError(
            "no prompt matches those filters; fix: run `slm-bench prompts show` to list them"
        )
    if as_json:
        for record in selected:
            click.echo(json.dumps(record.model_dump(), ensure_ascii=False))
    elif full_text or len(selected) == 1:
        for record in selected:
            _print_prompt(record)
    else:
        _print_listing(selected)


def _print_prompt(record) -> None:
    question = f", question: {record.question}" if record.question else ""
    click.echo(
        f"== {record.id} (task {record.task}, L={record.L}, {record.context_tokens} context"
        f" tokens{question})"
    )
    click.echo(record.text)
    click.echo()


def _print_listing(records) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{len(records)} prompts (narrow to one with --doc/--task/--L to see its text)"
    )
    for name, justify in (("id", "left"), ("task", "left"), ("L", "right"), ("tokens", "right")):
        table.add_column(name, justify=justify, no_wrap=True, min_width=len(name))
    table.add_column("context starts with", no_wrap=True, overflow="ellipsis", max_width=32)
    for r in records:
        table.add_row(
            r.id, r.task, str(r.L), str(r.context_tokens), r.context[:60].replace("\n", " ")
        )
    Console().print(table)
