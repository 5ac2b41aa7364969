"""Run a compiled model over a DocAssist split and score it (``slm-bench eval``).

For every task example of the split (``harness.docassist.format.task_examples``: the same
prompts the model is fine-tuned on and benchmarked with) the model answers greedily until
EOS; the answer is scored against the annotation with the metrics of ``harness.eval.metrics``.

Written to the output folder (a run directory, or any folder):

- ``quality.jsonl``: one ``QualityRecord`` (``harness.results.schema``) per task; what a
  grid report joins with the speed records of the same model and quantization;
- ``quality-examples.jsonl``: every example's prompt id, output, reference and scores.

GEval-style judging (an LLM grades each answer 1-5) runs only when a judge endpoint is
configured: ``SLM_BENCH_JUDGE_URL`` and ``SLM_BENCH_JUDGE_MODEL`` (key from
``OPENAI_API_KEY``); its answers are cached like the annotator's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from harness.docassist.annotate import OpenAIAnnotator
from harness.docassist.format import (
    SPLITS,
    TaskExample,
    load_examples,
    parse_questions,
    split_path,
)
from harness.errors import UserError
from harness.eval import metrics
from harness.eval.generate import PromptTooLong
from harness.progress import progress
from harness.prompts.templates import TASKS
from harness.results.schema import QualityRecord

QUALITY_FILE = "quality.jsonl"
EXAMPLES_FILE = "quality-examples.jsonl"

GEVAL_PROMPT = (
    """You are grading an assistant's answer to a document task.

Task given to the assistant:
{prompt}

Reference answer:
{reference}

Assistant's answer:
{output}

"""
    "Rate the assistant's answer for coherence, consistency with the document, fluency and "
    "relevance to the task, on a scale from 1 (poor) to 5 (excellent). Reply with the number only."
)


def judge_from_env(cache_dir: Path | str | None) -> OpenAIAnnotator | None:
    """The GEval judge when ``SLM_BENCH_JUDGE_URL`` is set, else None (GEval is skipped)."""
    url = os.environ.get("SLM_BENCH_JUDGE_URL")
    if not url:
        return None
    model = os.environ.get("SLM_BENCH_JUDGE_MODEL") or "gpt-4o-mini"
    key = os.environ.get("SLM_BENCH_JUDGE_KEY") or os.environ.get("OPENAI_API_KEY")
    return OpenAIAnnotator(url, key, model, cache_dir, max_tokens=4)


def geval(judge: OpenAIAnnotator, example: TaskExample, output: str) -> float | None:
    """The judge's 1-5 grade mapped to 0..1; None when its reply holds no grade."""
    reply = judge.complete(
        GEVAL_PROMPT.format(prompt=example.prompt, reference=example.target, output=output)
    )
    match = re.search(r"[1-5]", reply)
    return (int(match.group()) - 1) / 4 if match else None


def evaluate(
    generate,
    examples: list[TaskExample],
    *,
    model: str,
    quantization: str,
    dataset: Path,
    split: str = "test",
    run_id: str = "",
    judge: OpenAIAnnotator | None = None,
    weights: str = "real",
    engine: str = "tvm",
) -> tuple[list[QualityRecord], list[dict]]:
    """Answer every example with ``generate(prompt) -> str`` and score; (per-task records,
    per-example rows)."""
    rows = []
    with progress(len(examples), "evaluating") as bar:
        for ex in examples:
            started = time.perf_counter()
            try:
                output, error = generate(ex.prompt), None
            except PromptTooLong as exc:
                # the model cannot answer this document: it scores as an empty answer, so models
                # with short windows are compared on the same examples as the others
                output, error = "", str(exc)
            rows.append(
                {
                    "id": ex.id,
                    "doc_id": ex.doc_id,
                    "task": ex.task,
                    "question": ex.question,
                    "output": output,
                    "reference": ex.target,
                    "seconds": round(time.perf_counter() - started, 3),
                    "error": error,
                }
            )
            bar.advance(ex.id)
    sims = (
        metrics.sentence_encoder().similarity(
            [r["output"] for r in rows], [r["reference"] for r in rows]
        )
        if rows
        else []
    )
    for row, sim in zip(rows, sims, strict=True):
        row.update(metrics.rouge(row["output"], row["reference"]))
        row["bleu"] = metrics.sentence_bleu(row["output"], [row["reference"]])
        row["sts"] = sim
        row["intent_ok"] = metrics.intent_ok(row["task"], row["output"], row["question"])
    if judge is not None:
        by_id = {ex.id: ex for ex in examples}
        for row in rows:
            row["geval"] = geval(judge, by_id[row["id"]], row["output"])
    dataset_hash = _file_sha256(split_path(dataset, split))
    records = []
    for task in TASKS:
        mine = [r for r in rows if r["task"] == task]
        if mine:
            records.append(
                _task_record(
                    task,
                    mine,
                    model=model,
                    quantization=quantization,
                    dataset=Path(dataset).name,
                    dataset_hash=dataset_hash,
                    split=split,
                    run_id=run_id,
                    weights=weights,
                    engine=engine,
                )
            )
    return records, rows


def _task_record(task: str, rows: list[dict], **fields) -> QualityRecord:
    from harness.versioning import code_version

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    outputs = [r["output"] for r in rows]
    # Self-BLEU within each qs answer (are the three questions different from each other?);
    # for summ/qa across the task's answers (does the model say the same thing to every document?).
    if task == "qs":
        within = [
            s for s in (metrics.self_bleu(parse_questions(o)) for o in outputs) if s is not None
        ]
        self_bleu = sum(within) / len(within) if within else None
    else:
        self_bleu = metrics.self_bleu(outputs)
    scores = {
        "bleu": metrics.corpus_bleu(outputs, [r["reference"] for r in rows]),
        "rouge1": mean("rouge1"),
        "rouge2": mean("rouge2"),
        "rougeL": mean("rougeL"),
        "sts": mean("sts"),
        "geval": mean("geval"),
    }
    averaged = [v for v in scores.values() if v is not None]
    return QualityRecord(
        **fields,
        task=task,
        n=len(rows),
        **scores,
        self_bleu=self_bleu,
        intent_accuracy=sum(r["intent_ok"] for r in rows) / len(rows),
        failed=sum(r.get("error") is not None for r in rows),
        avg_score=sum(averaged) / len(averaged) if averaged else None,
        mean_seconds=mean("seconds"),
        code_version=code_version(),
    )


def write_results(
    out_dir: Path | str, records: list[QualityRecord], rows: list[dict]
) -> tuple[Path, Path]:
    """Write ``quality.jsonl`` and ``quality-examples.jsonl`` into ``out_dir`` (replacing earlier
    ones)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quality, examples = out / QUALITY_FILE, out / EXAMPLES_FILE
    _write_text(quality, "".join(r.model_dump_json() + "\n" for r in records))
    _write_text(examples, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return quality, examples


def load_quality(folder: Path | str) -> list[QualityRecord]:
    """The quality records of a folder (empty when it has none): for reports."""
    path = Path(folder) / QUALITY_FILE
    if not path.is_file():
        return []
    return [
        QualityRecord.model_validate_json(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def examples_for(
    dataset: Path | str, split: str = "test", limit: int | None = None
) -> list[TaskExample]:
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    examples = load_examples(dataset, split)
    if not examples:
        raise UserError(
            f"{split_path(dataset, split)} has no documents; fix: "
            f"rebuild with a larger {split} fraction (--split)"
        )
    return examples[:limit] if limit else examples


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    tmp.replace(path)
