"""``slm-bench eval``: quality of a model on a DocAssist split (BLEU, ROUGE, STS, Self-BLEU,
intent)."""

from __future__ import annotations

from pathlib import Path

import click

PATH = click.Path(path_type=Path)


@click.command(
    "eval",
    epilog="""\b
Examples:
  slm-bench eval --model smollm2-135m-instruct --docassist examples/data/docassist-tiny
  slm-bench eval --model out/slimlm-tiny/model --docassist examples/data/docassist-tiny \\
      --out results/RUN_DIR
  slm-bench eval --model smollm2-135m-instruct --docassist DIR --limit 5 --max-new-tokens 64
\b
GEval judging runs only when SLM_BENCH_JUDGE_URL (and SLM_BENCH_JUDGE_MODEL, OPENAI_API_KEY)
point at an OpenAI-compatible endpoint.""",
)
@click.option(
    "--model",
    required=True,
    help="A model as for `slm-bench run --model`: built-in/catalog name, .gguf, HF dir.",
)
@click.option(
    "--quant", default="q4f16_1", show_default=True, help="Quantization preset to compile with."
)
@click.option(
    "--docassist",
    "dataset",
    type=PATH,
    required=True,
    help="A folder written by `slm-bench docassist build`.",
)
@click.option(
    "--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True
)
@click.option(
    "--out",
    type=PATH,
    default=None,
    help="Where quality.jsonl goes (a run dir is fine) [default: results/eval-MODEL-QUANT].",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Score only the first N examples."
)
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Longest answer (decoding also stops at EOS).",
)
@click.option(
    "--run-id", default="", help="Run id recorded in the quality records (to join a speed run)."
)
def eval_cmd(
    model: str,
    quant: str,
    dataset: Path,
    split: str,
    out: Path | None,
    limit: int | None,
    max_new_tokens: int,
    run_id: str,
) -> None:
    """Answer a DocAssist split with MODEL (greedy, until EOS) and score it.

    Writes quality.jsonl (one record per task: BLEU, ROUGE-1/2/L, STS, Self-BLEU, intent
    accuracy, avg_score; all 0..1) and quality-examples.jsonl (every output) into --out.
    """
    import json

    from harness import paths
    from harness.cache import cache_dir
    from harness.engines.tvm.compile import compile_model
    from harness.errors import UserError
    from harness.eval.evaluate import (
        evaluate,
        examples_for,
        judge_from_env,
        write_results,
    )
    from harness.eval.generate import BundleGenerator
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset
    from harness.results.journal import read_run_info

    examples = examples_for(dataset, split, limit)

    def log(message: str) -> None:
        click.echo(message, err=True)

    loaded = resolve_model(model, log=log)
    # Records name the model as `slm-bench run` does — what was typed after --model — so a
    # report joins quality with speed; with --out a run's folder, that run's own name and id.
    info = read_run_info(out) if out is not None else None
    if info is not None:
        if (
            info.spec.model != model
            and resolve_model(info.spec.model, log=lambda *_: None).fingerprint
            != loaded.fingerprint
        ):
            raise UserError(
                f"{out} is a run of {info.spec.model}, not {model}; fix: pass --out a folder of its"
                " own, or that run's model"
            )
        model, run_id = info.spec.model, run_id or info.run_id
    bundle = compile_model(loaded, get_preset(quant), "llvm", log=log)
    manifest = json.loads((bundle / "manifest.json").read_text())
    generator = BundleGenerator(bundle, max_new_tokens=max_new_tokens)
    judge = judge_from_env(cache_dir("geval-judgements"))
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in manifest.get("model", model))
    out = out if out is not None else paths.results_dir() / f"eval-{slug}-{quant}"
    records, rows = evaluate(
        generator.generate,
        examples,
        model=model,
        quantization=quant,
        dataset=dataset,
        split=split,
        run_id=run_id,
        judge=judge,
        weights=manifest.get("weights", "real"),
    )
    quality, per_example = write_results(out, records, rows)
    _print_table(records)
    click.echo(
        f"wrote {quality} and {per_example} ({len(rows)}"
        f" examples{', GEval by ' + judge.model if judge else ''})"
    )


def _print_table(records) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = {
        "n": "n",
        "bleu": "BLEU",
        "rouge1": "R-1",
        "rouge2": "R-2",
        "rougeL": "R-L",
        "sts": "STS",
        "self_bleu": "SelfBLEU",
        "intent_accuracy": "intent",
        "geval": "GEval",
        "avg_score": "avg",
    }
    table = Table(
        title=(
            f"{records[0].model} {records[0].quantization} on"
            f" {records[0].dataset}/{records[0].split}"
            if records
            else "quality"
        )
    )
    table.add_column("task")
    for label in columns.values():
        table.add_column(label, justify="right")
    for r in records:
        values = [getattr(r, name) for name in columns]
        table.add_row(
            r.task,
            *("-" if v is None else str(v) if isinstance(v, int) else f"{v:.3f}" for v in values),
        )
    import sys

    Console(width=None if sys.stdout.isatty() else 120).print(table)  # logs get every column
