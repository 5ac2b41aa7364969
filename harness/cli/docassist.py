"""``slm-bench docassist``: build the DocAssist fine-tuning/evaluation set from documents."""

from __future__ import annotations

from pathlib import Path

import click

PATH = click.Path(path_type=Path)


@click.group(
    epilog="""\b
Examples:
  slm-bench docassist build prompts/corpus --out data/docassist --annotator local
  OPENAI_API_KEY=... slm-bench docassist build docs/ papers/*.pdf --out data/da --annotator openai
  slm-bench docassist show examples/data/docassist-tiny --split test"""
)
def docassist() -> None:
    """Build DocAssist data: documents -> 5 cl100k chunks -> 1 summary, 3 questions, 3 QA pairs.

    Follows SlimLM (arXiv 2411.09944, Section 3). The output folder holds train/validation/
    test JSONL (split by document, deterministic given --seed) and manifest.json.
    """


@docassist.command(
    epilog="""\b
Annotators:
  openai  an OpenAI-compatible /chat/completions endpoint; environment:
          SLM_BENCH_ANNOTATOR_URL (default https://api.openai.com/v1),
          OPENAI_API_KEY, SLM_BENCH_ANNOTATOR_MODEL (default gpt-4o-mini)
  local   a model compiled by the project's engine (--model, --quant), greedy until EOS
Answers are cached on disk (--cache); rerun the same command to resume an interrupted build.

\b
Examples:
  slm-bench docassist build prompts/corpus --out examples/data/docassist-tiny --annotator local
  slm-bench docassist build report.pdf notes/ --out /tmp/da --annotator openai \\
      --split 0.7,0.15,0.15"""
)
@click.argument("docs", nargs=-1, required=True, type=PATH)
@click.option(
    "--out",
    type=PATH,
    required=True,
    help="Output folder (train/validation/test.jsonl, manifest.json).",
)
@click.option(
    "--annotator",
    type=click.Choice(["openai", "local"]),
    required=True,
    help="Who writes the annotations.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the document split.")
@click.option(
    "--split",
    "split_text",
    default="0.8,0.1,0.1",
    show_default=True,
    help="train,validation,test fractions.",
)
@click.option(
    "--model",
    default="smollm2-135m-instruct",
    show_default=True,
    help="local: the model (as for `slm-bench run --model`).",
)
@click.option("--quant", default="q4f16_1", show_default=True, help="local: quantization preset.")
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Longest answer per prompt.",
)
@click.option(
    "--cache",
    type=PATH,
    default=None,
    help="Answer cache [default: <cache dir>/docassist-annotations].",
)
def build(
    docs: tuple[Path, ...],
    out: Path,
    annotator: str,
    seed: int,
    split_text: str,
    model: str,
    quant: str,
    max_new_tokens: int,
    cache: Path | None,
) -> None:
    """Build a DocAssist set from DOCS (.txt, .md, .pdf files or folders of them)."""
    import time

    from harness.cache import cache_dir
    from harness.docassist.build import build_docassist, parse_fractions

    fractions = parse_fractions(split_text)
    cache = cache if cache is not None else cache_dir("docassist-annotations")
    started = time.perf_counter()
    annot = _make_annotator(annotator, model, quant, max_new_tokens, cache)
    manifest = build_docassist(list(docs), out, annot, seed=seed, fractions=fractions)
    counts = manifest["counts"]
    by_split = ", ".join(f"{s} {n}" for s, n in counts["docs_by_split"].items())
    click.echo(
        f"wrote {counts['docs']} documents ({by_split}) to {out} in"
        f" {time.perf_counter() - started:.1f} s"
    )
    click.echo(
        f"annotator {annot.name}: {manifest['last_build']['annotator_requests']} requests,"
        f" {manifest['last_build']['annotator_cache_hits']} cached,"
        f" {sum(counts['fallbacks'].values())} fallbacks"
        f" ({', '.join(f'{k} {v}' for k, v in counts['fallbacks'].items())}),"
        f" {counts['trimmed_loops']} loops trimmed"
    )


def _make_annotator(kind: str, model: str, quant: str, max_new_tokens: int, cache: Path):
    from harness.docassist.annotate import LocalAnnotator, OpenAIAnnotator

    if kind == "openai":
        return OpenAIAnnotator.from_env(cache, max_tokens=max_new_tokens)
    from harness.engines.tvm.compile import compile_model
    from harness.models.resolve import resolve_model
    from harness.quantization import get_preset

    loaded = resolve_model(model, log=lambda m: click.echo(m, err=True))
    bundle = compile_model(loaded, get_preset(quant), "llvm", log=lambda m: click.echo(m, err=True))
    return LocalAnnotator(bundle, model, cache, max_new_tokens=max_new_tokens)


@docassist.command(
    epilog="""\b
Examples:
  slm-bench docassist show examples/data/docassist-tiny
  slm-bench docassist show examples/data/docassist-tiny --split test --examples"""
)
@click.argument("folder", type=PATH)
@click.option(
    "--split",
    type=click.Choice(["train", "validation", "test"]),
    default="train",
    show_default=True,
)
@click.option(
    "--examples",
    is_flag=True,
    help="Print the (task, prompt, target) examples instead of the records.",
)
def show(folder: Path, split: str, examples: bool) -> None:
    """Print a built set's records (or task examples) of one split."""
    from harness.docassist.format import load_examples, load_split

    if examples:
        for ex in load_examples(folder, split):
            click.echo(f"== {ex.id} [{ex.task}]\n-- target:\n{ex.target}\n")
        return
    for doc in load_split(folder, split):
        click.echo(f"== {doc.doc_id} ({doc.source}, {len(doc.chunks)} chunks, {doc.annotator})")
        click.echo(f"summary: {doc.summary}")
        for i, pair in enumerate(doc.qa, start=1):
            click.echo(f"Q{i}: {pair.question}\nA{i}: {pair.answer}")
        click.echo()
